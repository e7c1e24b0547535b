"""Plots of span-metric evaluations, written as PNG files.

Input is the result records of :mod:`evaluation.reports` (``name``, ``overall``, ``per_query``), as
``rag.evaluate.EvalResult.to_json()`` writes them for chunk-excerpt sets.

- :func:`plot_recall_vs_iou`: one labelled point per chunker, mean IoU (x) against mean recall (y), the
  trade-off of Chroma's report (a bigger chunk raises recall and lowers IoU).
- :func:`plot_query_distributions`: per chunker, the distribution over questions of IoU and of recall
  (box plots; the mean is marked).

Figures are drawn on matplotlib's Agg canvas, created inside each function: nothing happens at import,
no display is needed, and the process-wide backend (a notebook's, say) is left as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError

__all__ = ["plot_chunking_results", "plot_query_distributions", "plot_recall_vs_iou"]

RECALL_IOU_FILE = "recall_vs_iou.png"
DISTRIBUTION_FILE = "per_query_distribution.png"


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)  # attaches itself to the figure: savefig renders with Agg
    return figure


def _check_records(records: Sequence[Mapping[str, Any]], need: str) -> None:
    if not records:
        raise ConfigError("nothing to plot: pass at least one result record")
    for record in records:
        if "name" not in record or need not in record:
            raise ConfigError(
                f"result record {record.get('name', '?')!r} lacks 'name' or {need!r}; "
                "records come from EvalResult.to_json() or a saved report.json"
            )


def plot_recall_vs_iou(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Scatter of mean IoU (x) against mean recall (y), in percent, one labelled point per record."""
    _check_records(records, "overall")
    figure = _new_figure(6.4, 4.8)
    axes = figure.add_subplot()
    for record in records:
        mean = record["overall"]["mean"]
        x, y = 100 * mean["iou"], 100 * mean["recall"]
        axes.scatter([x], [y], s=36)
        axes.annotate(str(record["name"]), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xlabel("IoU (%)")
    axes.set_ylabel("Recall (%)")
    unit = records[0].get("unit", "chars")
    retrieve = records[0].get("retrieve")
    axes.set_title(f"Recall vs IoU ({unit}" + (f", top {retrieve})" if retrieve else ")"))
    axes.grid(True, alpha=0.3)
    axes.margins(0.15)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target)
    return target


def plot_query_distributions(
    records: Sequence[Mapping[str, Any]], path: str | Path, metrics: Sequence[str] = ("iou", "recall")
) -> Path:
    """Box plots, one panel per metric, one box per record, of the per-question values (percent)."""
    _check_records(records, "per_query")
    names = [str(r["name"]) for r in records]
    figure = _new_figure(max(6.4, 0.9 * len(records) + 2.0), 3.2 * len(metrics))
    for i, metric in enumerate(metrics):
        axes = figure.add_subplot(len(metrics), 1, i + 1)
        data = [[100 * float(row[metric]) for row in r["per_query"]] for r in records]
        axes.boxplot(data, showmeans=True)
        axes.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=8)
        label = {"iou": "IoU", "recall": "Recall", "precision": "Precision"}.get(metric, metric)
        axes.set_ylabel(f"{label} (%)")
        axes.grid(True, axis="y", alpha=0.3)
    figure.suptitle("Per-question distribution (triangle: mean)")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target)
    return target


def plot_chunking_results(records: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """Both plots into ``out_dir`` (``recall_vs_iou.png``, ``per_query_distribution.png``)."""
    folder = Path(out_dir)
    return [
        plot_recall_vs_iou(records, folder / RECALL_IOU_FILE),
        plot_query_distributions(records, folder / DISTRIBUTION_FILE),
    ]
