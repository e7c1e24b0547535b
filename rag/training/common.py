"""What every trainer shares: CPU/offline trainer arguments, the loss log, resume, and the summary.

The training loops themselves are Hugging Face's (``transformers.Trainer`` and sentence-transformers'
``SentenceTransformerTrainer``): they checkpoint, resume and draw the progress bar. This module only
fixes the settings that suit this project's runs (CPU, no hub, no experiment trackers) and adds the two
records a user reads afterwards: ``loss_log.jsonl`` (one line per logging step) and ``training.json``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError
from rag.core.files import write_file_atomically
from rag.core.validation import positive_int

LOSS_LOG = "loss_log.jsonl"
SUMMARY = "training.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

try:  # transformers is a dependency; the fallback keeps this module importable for light tools
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover
    TrainerCallback = object  # type: ignore[misc,assignment]


class LossLogCallback(TrainerCallback):  # type: ignore[misc]
    """Append ``{"step", "epoch", "loss", "learning_rate", "seconds"}`` to ``OUT/loss_log.jsonl``.

    Lines are appended, so a resumed run continues the same log; ``seconds`` counts from this process's
    start of training.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOSS_LOG
        self._start = time.monotonic()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.monotonic()

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or "loss" not in logs:
            return  # evaluation and end-of-training summaries carry no step loss
        record = {
            "step": state.global_step,
            "epoch": logs.get("epoch", state.epoch),
            "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"),
            "seconds": round(time.monotonic() - self._start, 2),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class TimeLimitCallback(TrainerCallback):  # type: ignore[misc]
    """Stop training at the first step after ``minutes`` of wall time, and save it as a checkpoint
    (transformers has a step limit only). ``stopped_at`` is that step, None if the run ended first."""

    def __init__(self, minutes: float) -> None:
        if not minutes > 0:
            raise ConfigError(f"a time limit must be positive minutes, got {minutes!r}")
        self.seconds = minutes * 60
        self._start = time.monotonic()
        self.stopped_at: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if time.monotonic() - self._start >= self.seconds and state.global_step < state.max_steps:
            control.should_training_stop = True
            control.should_save = True
            self.stopped_at = state.global_step


def read_loss_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records :class:`LossLogCallback` wrote (empty if there are none)."""
    path = Path(out_dir) / LOSS_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def last_checkpoint(out_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder under ``out_dir`` (by step), for ``resume_from_checkpoint``."""
    root = Path(out_dir)
    if not root.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return str(max(steps)[1]) if steps else None


def resume_from(out_dir: str | Path, resume: bool) -> str | None:
    """The checkpoint to resume from when ``resume`` is asked; a clear error when there is none."""
    if not resume:
        return None
    checkpoint = last_checkpoint(out_dir)
    if checkpoint is None:
        raise ConfigError(f"--resume: no checkpoint-N folder in {out_dir}; run without --resume to start")
    return checkpoint


def training_arguments(
    out_dir: str | Path,
    *,
    max_steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 42,
    save_steps: int | None = None,
    warmup_ratio: float = 0.1,
    logging_steps: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``TrainingArguments`` / ``SentenceTransformerTrainingArguments``.

    CPU only, nothing reported to trackers, two checkpoints kept, a loss line every ``logging_steps``
    (default: about 50 lines per run), a checkpoint every ``save_steps`` (default: 4 per run).
    """
    positive_int(max_steps, "training steps")
    positive_int(batch_size, "batch size")
    if not learning_rate > 0:
        raise ConfigError(f"learning rate must be positive, got {learning_rate!r}")
    args: dict[str, Any] = {
        "output_dir": str(out_dir),
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "warmup_steps": int(round(warmup_ratio * max_steps)),
        "logging_steps": logging_steps or max(1, max_steps // 50),
        "save_strategy": "steps",
        "save_steps": save_steps or max(1, max_steps // 4),
        "save_total_limit": 2,
        "use_cpu": True,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }
    args.update(extra)
    return args


def check_base_model(name: str) -> str:
    """``name`` resolved to something loadable offline (folder, installed package, cached hub id)."""
    from rag.core.models import resolve_model

    return resolve_model(name)


def write_training_summary(out_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write ``OUT/training.json`` atomically (base model, data, steps, minutes, arguments)."""
    path = Path(out_dir) / SUMMARY
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, json.dumps(info, indent=2, default=str) + "\n")
    return path
