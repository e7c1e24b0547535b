"""ColBERT late-interaction model: one L2-normalised vector per token, scored by MaxSim.

- :mod:`rag.colbert.model`: the model on sentence-transformers modules (``Transformer`` backbone, a
  bias-free ``Dense`` projection to ``dim``, L2 normalisation), with PyLate's markers, query
  augmentation and punctuation skiplist, saved in PyLate's checkpoint layout.
- :mod:`rag.colbert.loaders`: reads our / PyLate checkpoints and Stanford-ColBERT ones (an HF folder
  whose state dict holds ``linear.weight``), safetensors only.
- :mod:`rag.colbert.encoder`: :class:`~rag.colbert.encoder.ColBERTEncoder`, the inference API indexes
  and retrievers use.
- :mod:`rag.colbert.testing`: :class:`~rag.colbert.testing.FakeColBERTEncoder`, the same API without
  torch, for fast tests.

Importing this package loads nothing heavy; import the submodules you need.
"""

from __future__ import annotations

QUERY_MARKER = "[Q] "
DOCUMENT_MARKER = "[D] "
DEFAULT_DIM = 128
DEFAULT_QUERY_MAXLEN = 32
DEFAULT_DOC_MAXLEN = 180

__all__ = ["DEFAULT_DIM", "DEFAULT_DOC_MAXLEN", "DEFAULT_QUERY_MAXLEN", "DOCUMENT_MARKER", "QUERY_MARKER"]
