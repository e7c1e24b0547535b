"""The ColBERT model, built from sentence-transformers modules, and its PyLate-layout writer.

The model is sentence-transformers' :class:`~sentence_transformers.MultiVectorEncoder` (the maintained
home of ColBERT in sentence-transformers 6: MaxSim scoring, query expansion, skiplist, losses and
trainer) over four modules:

1. ``Transformer``: any Hugging Face encoder, with the marker tokens ``[Q] `` and ``[D] `` added to its
   vocabulary (as PyLate does), and query expansion on: a query is padded with ``[MASK]`` to
   ``query_maxlen`` (default 32) and every position, ``[MASK]`` included, gets a vector. Documents are
   cut at ``doc_maxlen`` (default 180) tokens, markers and ``[CLS]`` / ``[SEP]`` included.
2. ``Dense``: a linear projection to ``dim`` (default 128), no bias, identity activation.
3. ``MultiVectorMask``: drops the punctuation tokens (``string.punctuation``, PyLate's skiplist) of
   documents; queries keep theirs.
4. ``Normalize``: L2-normalises every token vector.

A query is ``[CLS] [Q] tokens... [SEP] [MASK]...``; a document is ``[CLS] [D] tokens... [SEP]`` minus
its punctuation. **Empty-document rule:** the special tokens are never dropped, so a document that is
empty or only punctuation keeps its ``[CLS]``, ``[D]`` and ``[SEP]`` vectors and can still be indexed
and scored (PyLate and Stanford ColBERT behave the same way).

:func:`save_colbert` writes PyLate's checkpoint layout (the encoder and tokenizer at the root,
``1_Dense/``, ``modules.json`` and the ColBERT fields of ``config_sentence_transformers.json``:
``query_prefix``, ``document_prefix``, ``query_length``, ``document_length``,
``attend_to_expansion_tokens``, ``skiplist_words``, ``do_query_expansion``), so ``pylate.models.ColBERT``
loads our models; :func:`rag.colbert.loaders.load_colbert` reads them back, PyLate's own, and
Stanford-ColBERT checkpoints. Weights are safetensors only.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from pathlib import Path
from typing import Any

from rag.colbert import (
    DEFAULT_DIM,
    DEFAULT_DOC_MAXLEN,
    DEFAULT_QUERY_MAXLEN,
    DOCUMENT_MARKER,
    QUERY_MARKER,
)
from rag.core.errors import ConfigError
from rag.core.models import quiet_model_loading, resolve_model
from rag.core.validation import positive_int

SKIPLIST_WORDS = list(string.punctuation)
# The module class names PyLate writes in modules.json; sentence-transformers 6 maps both to its own.
_PYLATE_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
]


def check_lengths(query_maxlen: Any, doc_maxlen: Any) -> tuple[int, int]:
    """Both lengths as positive ints of at least 3 ([CLS], the marker and [SEP] take three tokens)."""
    q, d = positive_int(query_maxlen, "query_maxlen"), positive_int(doc_maxlen, "doc_maxlen")
    for name, value in (("query_maxlen", q), ("doc_maxlen", d)):
        if value < 3:
            raise ConfigError(f"{name} must be at least 3 ([CLS], the marker and [SEP]), got {value}")
    return q, d


def set_lengths(model: Any, query_maxlen: int, doc_maxlen: int, attend: bool | None = None) -> None:
    """Set the query width (``[MASK]`` padding target) and the document cut on a loaded model."""
    transformer = model[0]
    current = transformer.query_expansion or {}
    transformer.query_expansion = None  # the setter checks query_length against the expansion length
    transformer.query_length = query_maxlen
    transformer.document_length = doc_maxlen
    transformer.query_expansion = {
        "strategy": "fixed",
        "attend": bool(current.get("attend", False) if attend is None else attend),
        "length": query_maxlen,
    }


def build_colbert(
    base: str,
    *,
    dim: int = DEFAULT_DIM,
    query_maxlen: int = DEFAULT_QUERY_MAXLEN,
    doc_maxlen: int = DEFAULT_DOC_MAXLEN,
    device: str = "cpu",
    progress: bool = False,
) -> Any:
    """A new ColBERT model on the encoder ``base`` (folder, model package or cached hub id).

    The projection is random (seeded by torch's generator): train it before use. ``base`` may be a
    sentence-transformers folder (its pooling is dropped: the encoder at its root is used).
    """
    import torch
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from transformers import AddedToken

    dim = positive_int(dim, "dim")
    query_maxlen, doc_maxlen = check_lengths(query_maxlen, doc_maxlen)
    path = resolve_model(base)
    with quiet_model_loading(not progress):
        transformer = Transformer(path, model_kwargs={"use_safetensors": True})
    tokenizer = transformer.tokenizer
    if tokenizer.mask_token_id is None:
        raise ConfigError(
            f"base model {base!r} has no [MASK] token, which ColBERT's query augmentation pads with; "
            "use a masked-language-model encoder (BERT, MiniLM, ...)"
        )
    # Markers as single special tokens, never lower-cased, so "[Q] " + text tokenizes as PyLate inserts it.
    tokenizer.add_tokens(
        [AddedToken(m, normalized=False, special=True) for m in (QUERY_MARKER, DOCUMENT_MARKER)]
    )
    transformer.auto_model.resize_token_embeddings(len(tokenizer))
    dense = Dense(
        transformer.get_embedding_dimension(),
        dim,
        bias=False,
        activation_function=torch.nn.Identity(),
        module_input_name="token_embeddings",
    )
    modules = [
        transformer,
        dense,
        MultiVectorMask(skiplist_words=SKIPLIST_WORDS),
        Normalize(module_input_name="token_embeddings"),
    ]
    model = MultiVectorEncoder(
        modules=modules, device=device, prompts={"query": QUERY_MARKER, "document": DOCUMENT_MARKER}
    )
    set_lengths(model, query_maxlen, doc_maxlen, attend=False)
    return model


def colbert_settings(model: Any) -> dict[str, Any]:
    """What shapes a model's token vectors: markers, lengths, dim, skiplist, expansion attention."""
    transformer = model[0]
    expansion = transformer.query_expansion or {}
    dense = _dense(model)
    mask = next((m for m in model if type(m).__name__ == "MultiVectorMask"), None)
    return {
        "query_marker": model.prompts.get("query") or "",
        "document_marker": model.prompts.get("document") or "",
        "query_maxlen": int(expansion.get("length") or transformer.query_length or DEFAULT_QUERY_MAXLEN),
        "doc_maxlen": int(transformer.document_length or DEFAULT_DOC_MAXLEN),
        "dim": int(dense.out_features),
        "attend_to_expansion_tokens": bool(expansion.get("attend", False)),
        "skiplist_words": list(getattr(mask, "skiplist_words", None) or []),
    }


def _dense(model: Any) -> Any:
    from sentence_transformers.base.modules.dense import Dense

    denses = [m for m in model if isinstance(m, Dense)]
    if not denses:
        raise ConfigError("the model has no Dense projection, so it is not a ColBERT model")
    return denses[-1]


def save_colbert(model: Any, out_dir: str | Path) -> Path:
    """Write ``model`` to ``out_dir`` in PyLate's checkpoint layout (see the module docstring).

    The files are written to a temporary folder beside them and moved into ``out_dir`` one by one, so
    other files there (training logs, checkpoints) stay, and a crash never leaves a half-written file.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = colbert_settings(model)
    transformer = model[0]
    dense = _dense(model)
    if dense.linear.bias is not None or type(dense.activation_function).__name__ != "Identity":
        raise ConfigError(
            "PyLate's layout holds a bias-free, identity-activation projection; this one is not"
        )
    stage = Path(tempfile.mkdtemp(prefix=".colbert-save-", dir=out))
    try:
        transformer.auto_model.save_pretrained(stage, safe_serialization=True)
        transformer.tokenizer.save_pretrained(stage)
        _write_json(
            stage / "sentence_bert_config.json",
            {"max_seq_length": settings["doc_maxlen"], "do_lower_case": False},
        )
        (stage / "1_Dense").mkdir()
        weight = dense.linear.weight.detach().to("cpu").contiguous()
        save_file({"linear.weight": weight}, str(stage / "1_Dense" / "model.safetensors"))
        _write_json(
            stage / "1_Dense" / "config.json",
            {
                "in_features": int(dense.in_features),
                "out_features": int(dense.out_features),
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
                "use_residual": False,
            },
        )
        _write_json(stage / "modules.json", _PYLATE_MODULES)
        _write_json(
            stage / "config_sentence_transformers.json",
            {
                "model_type": "ColBERT",
                "prompts": {},
                "default_prompt_name": None,
                "similarity_fn_name": "MaxSim",
                "query_prefix": settings["query_marker"],
                "document_prefix": settings["document_marker"],
                "query_length": settings["query_maxlen"],
                "document_length": settings["doc_maxlen"],
                "attend_to_expansion_tokens": settings["attend_to_expansion_tokens"],
                "skiplist_words": settings["skiplist_words"],
                "do_query_expansion": True,
            },
        )
        for item in sorted(stage.iterdir()):
            target = out / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
