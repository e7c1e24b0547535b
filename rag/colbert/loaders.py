"""Load a ColBERT checkpoint of any of the three layouts into one model (safetensors only).

- **ours / PyLate**: ``modules.json`` with a Transformer at the root and ``1_Dense/``, the ColBERT fields
  in ``config_sentence_transformers.json`` (what :func:`rag.colbert.model.save_colbert` and
  ``pylate.models.ColBERT.save`` write). Also sentence-transformers' own ``MultiVectorEncoder`` saves.
- **Stanford ColBERT** (``colbert-ir/colbertv2.0``): a Hugging Face folder whose ``config.json`` names the
  ``HF_ColBERT`` architecture and whose state dict holds the projection as ``linear.weight`` beside the
  encoder's weights; markers, lengths and punctuation masking come from ``artifact.metadata``.

sentence-transformers 6 reads all three (it rewrites PyLate's class names and Stanford's inline
projection into its own modules); this module adds what we need on top: offline resolution, a refusal of
pickled weights, and a check that what was loaded is a ColBERT model at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError, ModelNotAvailableError
from rag.core.models import quiet_model_loading, resolve_model

# Weight files that are pickles: loading one runs whatever code it holds.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def checkpoint_layout(folder: str | Path) -> str:
    """``"stanford"``, ``"pylate"`` (ours too), ``"sentence-transformers"`` or ``"encoder"`` (a plain HF
    encoder or a single-vector model: no ColBERT projection yet)."""
    root = Path(folder)
    config = _read_json(root / "config.json")
    if "HF_ColBERT" in (config.get("architectures") or []):
        return "stanford"
    st_config = _read_json(root / "config_sentence_transformers.json")
    if st_config.get("model_type") == "ColBERT" or "query_prefix" in st_config:
        return "pylate"
    if st_config.get("model_type") == "MultiVectorEncoder":
        return "sentence-transformers"
    return "encoder"


def check_safetensors(folder: str | Path) -> None:
    """Refuse a model folder whose weights (root or a module folder) exist only as pickles."""
    root = Path(folder)
    folders = [root]
    modules = _read_json(root / "modules.json", default=[])
    if isinstance(modules, list):
        folders += [root / str(m["path"]) for m in modules if isinstance(m, dict) and m.get("path")]
    for place in folders:
        if not place.is_dir():
            continue
        pickles = sorted(p.name for p in place.iterdir() if p.suffix in _PICKLE_SUFFIXES and p.is_file())
        has_safetensors = any(p.suffix == ".safetensors" for p in place.iterdir())
        if pickles and not has_safetensors:
            raise ModelNotAvailableError(
                f"{place} holds its weights only as pickles ({', '.join(pickles)}), which can run code "
                "when loaded, so they are not read. Convert them to safetensors first (transformers: "
                "`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`)."
            )


def load_colbert(model: str | Path, *, device: str = "cpu", progress: bool = False) -> Any:
    """The ColBERT model in ``model`` (folder, package name or cached hub id), of any layout above.

    A folder that holds a plain encoder (no projection) is refused: train it with
    ``rag train colbert --base MODEL`` first.
    """
    from sentence_transformers import MultiVectorEncoder

    path = resolve_model(str(model))
    folder = Path(path)
    if folder.is_dir():
        check_safetensors(folder)
        layout = checkpoint_layout(folder)
        if layout == "encoder":
            raise ConfigError(
                f"{model} is not a ColBERT checkpoint (no ColBERT fields in its "
                "config_sentence_transformers.json, "
                "no HF_ColBERT architecture); make one with `rag train colbert --base "
                f"{model} --out DIR`"
            )
    with quiet_model_loading(not progress):
        loaded = MultiVectorEncoder(
            path,
            device=device,
            local_files_only=True,
            model_kwargs={"use_safetensors": True},
        )
    if loaded[0].query_expansion is None:
        raise ConfigError(f"{model} loaded without query expansion, so it is not a ColBERT model")
    return loaded


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return {} if default is None else default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelNotAvailableError(
            f"{path} is not valid JSON ({exc}); the model folder is damaged"
        ) from exc
