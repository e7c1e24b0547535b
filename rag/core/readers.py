"""Corpus readers: turn a corpus on disk into haystack ``Document`` objects, reporting what was skipped.

Accepted layouts (detected by :func:`read_corpus`):

1. **BEIR folder**: a folder holding ``corpus.jsonl``, one JSON object a line with ``_id``, ``title``,
   ``text`` (``queries.jsonl`` and ``qrels/`` may sit beside it and are not read here).
2. **JSONL file** (``.jsonl`` or ``.ndjson``): one JSON object a line with ``id``, ``text`` and
   optionally ``title``.
3. **Folder of text files**: every ``.txt`` and ``.md`` file under the folder, at any depth; the id is
   the path relative to the folder (with ``/``), the title the file name without its extension.

Rules (the same for every layout):

- **Fields.** The document's content is the text only; the title goes to ``meta["title"]``. Every other
  field of a JSON object is kept in ``meta``; a ``metadata`` object (BEIR) is merged into ``meta``. The
  id field is ``id`` or ``_id`` (either is accepted in both JSON layouts) and may be a string or an
  integer (kept as a string). ``text`` must be a string; ``title``, when present, a string or null.
- **Missing id or text** (or a value of the wrong type) is refused: :class:`InputFormatError` naming the
  file, the line and the field.
- **Malformed JSON**, or a line holding something other than a JSON object, is refused with the file and
  line number. Blank lines are skipped.
- **Duplicate ids** are refused: the error names the id and both line numbers.
- **Empty documents** (text empty or only whitespace, even when there is a title) are skipped, counted in
  ``skipped["empty"]``, and their ids listed in a warning.
- **Invalid UTF-8** bytes are decoded as U+FFFD (the replacement character); a warning names the file and
  the lines. A UTF-8 byte-order mark at the start of a file is dropped.
- **Too long documents**: a document with more than ``max_chars`` characters is refused (never
  truncated) with an error naming it and suggesting to split it into several documents (chunking) or to
  raise ``max_chars``. ``max_chars=None`` removes the limit.
- **Text files** are read like Python's text mode: ``\\r\\n`` and ``\\r`` become ``\\n``, so character
  offsets match ``open(path, encoding="utf-8").read()``. Files with other extensions are skipped and
  counted in ``skipped["unsupported_file"]``; hidden files and folders (name starting with ``.``) in
  ``skipped["hidden"]``; both are listed in warnings.

Nothing is dropped silently: every skipped item is counted in :attr:`ReadReport.skipped` and named in
:attr:`ReadReport.warnings`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haystack import Document

from rag.core.errors import ConfigError, InputFormatError

DEFAULT_MAX_CHARS = 5_000_000
TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_ID_FIELDS = ("id", "_id")
_LISTED = 10  # how many ids / lines a warning lists before summarizing

ACCEPTED_LAYOUTS = (
    "a BEIR folder containing corpus.jsonl (fields _id, title, text); "
    "a .jsonl file (fields id, text, optional title); "
    "or a folder of .txt / .md files"
)


@dataclass
class ReadReport:
    """What :func:`read_corpus` read: the documents, counts of what it skipped and why, and warnings."""

    documents: list[Document]
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    layout: str = ""


def read_corpus(path: str | Path, max_chars: int | None = DEFAULT_MAX_CHARS) -> ReadReport:
    """Read a corpus in any accepted layout (see the module docstring), detected from ``path``."""
    bad_limit = isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1
    if max_chars is not None and bad_limit:
        raise ConfigError(f"max_chars must be a positive integer or None (no limit), got {max_chars!r}")
    root = Path(path)
    if not root.exists():
        raise InputFormatError(f"corpus path does not exist; expected {ACCEPTED_LAYOUTS}", str(root))
    if root.is_file():
        if root.name.lower().endswith(JSONL_SUFFIXES):
            return _read_jsonl(root, max_chars, layout="jsonl")
        raise InputFormatError(f"unsupported corpus file type; expected {ACCEPTED_LAYOUTS}", str(root))
    corpus = root / "corpus.jsonl"
    if corpus.is_file():
        return _read_jsonl(corpus, max_chars, layout="beir")
    if any(p.is_file() and p.suffix.lower() in TEXT_SUFFIXES for p in _walk(root)[0]):
        return _read_text_folder(root, max_chars)
    hint = ""
    if (root / "corpus.jsonl.gz").exists():
        hint = " (found corpus.jsonl.gz: decompress it first, e.g. `gunzip corpus.jsonl.gz`)"
    raise InputFormatError(f"folder matches no corpus layout{hint}; expected {ACCEPTED_LAYOUTS}", str(root))


def iter_jsonl(
    path: str | Path, invalid_utf8_lines: list[int] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every non-blank line of a JSON Lines file (lines count from 1).

    Malformed JSON, or a line that is not a JSON object, raises :class:`InputFormatError` naming the file
    and line. Invalid UTF-8 bytes are replaced by U+FFFD; pass a list as ``invalid_utf8_lines`` to
    collect the numbers of the lines where that happened.
    """
    name = str(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="replace")
                if invalid_utf8_lines is not None:
                    invalid_utf8_lines.append(number)
            if number == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputFormatError(
                    f"malformed JSON ({error.msg} at column {error.colno}); "
                    "each line must hold one JSON object",
                    name,
                    number,
                ) from None
            if not isinstance(obj, dict):
                raise InputFormatError(
                    f"expected a JSON object on each line, got {_json_type(obj)}", name, number
                )
            yield number, obj


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class _Collector:
    """Accumulates documents, enforcing the shared rules (duplicates, empty, max_chars)."""

    def __init__(self, max_chars: int | None) -> None:
        self.max_chars = max_chars
        self.documents: list[Document] = []
        self.skipped: dict[str, int] = {}
        self.warnings: list[str] = []
        self.first_seen: dict[str, str] = {}  # id -> where it was first seen ("line 3" / "file a.txt")
        self.empty_ids: list[str] = []

    def add(self, doc_id: str, text: str, meta: dict[str, Any], path: str, line: int | None) -> None:
        where = f"line {line}" if line is not None else f"file {path}"
        if doc_id in self.first_seen:
            raise InputFormatError(
                f"duplicate document id {doc_id!r} (first on {self.first_seen[doc_id]}, again on {where}); "
                "ids must be unique",
                path,
                line,
            )
        self.first_seen[doc_id] = where
        if not text.strip():
            self.skip("empty")
            self.empty_ids.append(doc_id)
            return
        if self.max_chars is not None and len(text) > self.max_chars:
            raise InputFormatError(
                f"document {doc_id!r} has {len(text):,} characters, more than max_chars={self.max_chars:,}; "
                "split it into several documents (or chunk it before indexing), or raise the limit "
                "(read_corpus(..., max_chars=...))",
                path,
                line,
            )
        self.documents.append(Document(id=doc_id, content=text, meta=meta))

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def report(self, layout: str) -> ReadReport:
        if self.empty_ids:
            self.warnings.append(
                f"skipped {len(self.empty_ids)} empty or whitespace-only document(s): "
                f"{_listing(self.empty_ids)}"
            )
        return ReadReport(self.documents, dict(self.skipped), list(self.warnings), layout)


def _listing(items: list[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_LISTED])
    return shown + (f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else "")


def _read_jsonl(path: Path, max_chars: int | None, layout: str) -> ReadReport:
    collector = _Collector(max_chars)
    name = str(path)
    bad_lines: list[int] = []
    for line, obj in iter_jsonl(path, invalid_utf8_lines=bad_lines):
        doc_id = _field_id(obj, name, line)
        text = obj.get("text")
        if not isinstance(text, str):
            present = ", ".join(sorted(obj)) or "none"
            problem = "missing" if "text" not in obj else f"must be a string, got {_json_type(text)}"
            raise InputFormatError(f"field 'text' {problem} (fields present: {present})", name, line)
        title = obj.get("title")
        if title is not None and not isinstance(title, str):
            message = f"field 'title' must be a string or null, got {_json_type(title)}"
            raise InputFormatError(message, name, line)
        meta: dict[str, Any] = {}
        for key, value in obj.items():
            if key in _ID_FIELDS or key == "text" or (key == "title" and value is None):
                continue
            if key == "metadata" and isinstance(value, dict):
                meta.update(value)
            else:
                meta[key] = value
        collector.add(doc_id, text, meta, name, line)
    if bad_lines:
        collector.warnings.insert(
            0,
            f"{name}: invalid UTF-8 bytes replaced with U+FFFD on {len(bad_lines)} line(s): "
            f"{_listing(bad_lines)}",
        )
    return collector.report(layout)


def _field_id(obj: dict[str, Any], path: str, line: int) -> str:
    key = next((k for k in _ID_FIELDS if k in obj), None)
    if key is None:
        present = ", ".join(sorted(obj)) or "none"
        raise InputFormatError(f"field 'id' (or '_id') is missing (fields present: {present})", path, line)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, str | int):
        message = f"field {key!r} must be a string or an integer, got {_json_type(value)}"
        raise InputFormatError(message, path, line)
    doc_id = str(value)
    if not doc_id.strip():
        raise InputFormatError(f"field {key!r} is empty; every document needs an id", path, line)
    return doc_id


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Files under ``root`` (sorted, depth first) and the hidden entries left out, without following
    hidden folders."""
    files: list[Path] = []
    hidden: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            hidden.append(entry)
        elif entry.is_dir():
            sub_files, sub_hidden = _walk(entry)
            files.extend(sub_files)
            hidden.extend(sub_hidden)
        else:
            files.append(entry)
    return files, hidden


def _read_text_folder(root: Path, max_chars: int | None) -> ReadReport:
    collector = _Collector(max_chars)
    files, hidden = _walk(root)
    unsupported: list[str] = []
    invalid: list[str] = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        if path.suffix.lower() not in TEXT_SUFFIXES:
            collector.skip("unsupported_file")
            unsupported.append(relative)
            continue
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            invalid.append(relative)
        # Python's text mode: drop a BOM, turn \r\n and \r into \n.
        text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        collector.add(relative, text, {"title": path.stem}, str(path), None)
    if hidden:
        collector.skipped["hidden"] = len(hidden)
    if invalid:
        collector.warnings.append(
            f"invalid UTF-8 bytes replaced with U+FFFD in {len(invalid)} file(s) under {root}: "
            f"{_listing(invalid)}"
        )
    if unsupported:
        collector.warnings.append(
            f"skipped {len(unsupported)} file(s) that are not {' / '.join(TEXT_SUFFIXES)}: "
            f"{_listing(unsupported)}"
        )
    if hidden:
        names = [entry.relative_to(root).as_posix() for entry in hidden]
        collector.warnings.append(f"skipped {len(hidden)} hidden file(s) or folder(s): {_listing(names)}")
    return collector.report("text_folder")
