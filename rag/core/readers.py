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
- **No field is dropped or overwritten.** A record holding both ``id`` and ``_id`` is refused unless
  they are the same id (the error names the file, the line and both values). The names in
  :data:`RESERVED_META_KEYS` (``source_id``, ``start``, ``end``, ``chunk_index``) are written by
  chunking into every chunk's meta, so a field with one of these names, at the top level or inside
  ``metadata``, is refused with the file, line and field, and the advice to rename it. A key of
  ``metadata`` that is also a top-level field with a different value is refused the same way, and so
  is a JSON object that repeats a key (JSON parsers would keep only the last value).
- **Malformed JSON**, or a line holding something other than a JSON object, is refused with the file and
  line number. Blank lines are skipped.
- **Duplicate ids** are refused: the error names the id and both line numbers.
- **Empty documents** (text empty or only whitespace, even when there is a title) are skipped, counted in
  ``skipped["empty"]``, and their ids listed in a warning.
- **Invalid UTF-8** bytes are decoded as U+FFFD (the replacement character); a warning names the file and
  the lines. A UTF-8 byte-order mark at the start of a file is dropped.
- **Lone surrogates**: a JSON escape of half a UTF-16 surrogate pair (``"\\ud800"`` with no partner),
  in any string of a line (id, text, title, metadata values or keys), cannot be written as UTF-8; each
  one is replaced by U+FFFD and a warning names the file and the lines, as for invalid UTF-8. A
  complete pair (``"\\ud83d\\ude00"``) is one character and is kept.
- **Too long documents**: a document with more than ``max_chars`` characters is refused (never
  truncated) with an error naming it and suggesting to split it into several documents (chunking) or to
  raise ``max_chars``. ``max_chars=None`` removes the limit.
- **Text files** are read like Python's text mode: ``\\r\\n`` and ``\\r`` become ``\\n``, so character
  offsets match ``open(path, encoding="utf-8").read()``. Files with other extensions are skipped and
  counted in ``skipped["unsupported_file"]``; hidden files and folders (name starting with ``.``) in
  ``skipped["hidden"]``; both are listed in warnings.
- **Pipes.** A path that is a pipe or a character device (``--corpus /dev/stdin``, ``--corpus
  <(zcat corpus.jsonl.gz)``) is read once as a JSONL file, whatever its name, and named as given in
  messages; so is ``/dev/stdin`` or ``/dev/fd/N`` when it is a redirected regular file. Any other path
  that is neither a folder nor a readable file (a socket, a block device, a file without read
  permission) is refused with the accepted layouts.

Nothing is dropped silently: every skipped item is counted in :attr:`ReadReport.skipped` and named in
:attr:`ReadReport.warnings`.

Haystack is imported only when the documents are built, after the whole input has been read and
checked, so an input error costs no heavy import.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.core.errors import InputFormatError
from rag.core.validation import positive_int

if TYPE_CHECKING:
    from haystack import Document

DEFAULT_MAX_CHARS = 5_000_000
TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_ID_FIELDS = ("id", "_id")
_LISTED = 10  # how many ids / lines a warning lists before summarizing

#: Meta keys that :func:`rag.core.chunking.chunk_documents` writes into every chunk; user fields with
#: these names are refused rather than overwritten (evaluation and ``rag delete`` read them).
RESERVED_META_KEYS = ("source_id", "start", "end", "chunk_index")

ACCEPTED_LAYOUTS = (
    "a BEIR folder containing corpus.jsonl (fields _id, title, text); "
    "a .jsonl file (fields id, text, optional title), or the same JSONL on a pipe such as /dev/stdin; "
    "or a folder of .txt / .md files"
)

# json.loads turns an escaped lone surrogate ("\ud800") into a str that cannot be encoded as UTF-8. A
# complete escaped pair becomes one code point, so whatever surrogate is left after decoding is lone.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # cheap test on the raw line before walking
# Names under which a pipe or a redirected stdin shows up, whatever the shell.
_STREAM_FOLDERS = (Path("/dev/fd"), Path("/proc/self/fd"))


@dataclass
class ReadReport:
    """What :func:`read_corpus` read: the documents, counts of what it skipped and why, and warnings."""

    documents: list[Document]
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    layout: str = ""


def read_corpus(path: str | Path, max_chars: int | None = DEFAULT_MAX_CHARS) -> ReadReport:
    """Read a corpus in any accepted layout (see the module docstring), detected from ``path``."""
    if max_chars is not None:
        positive_int(max_chars, "max_chars (None for no limit)")
    root = Path(path)
    try:
        return _read_any(root, max_chars)
    except PermissionError as error:
        culprit = error.filename or str(root)
        raise InputFormatError(
            f"cannot read {culprit} ({error.strerror}); give the user read permission, "
            f"or point to another corpus: {ACCEPTED_LAYOUTS}",
            str(root),
        ) from None


def _read_any(root: Path, max_chars: int | None) -> ReadReport:
    try:
        mode = root.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        message = f"corpus path does not exist; expected {ACCEPTED_LAYOUTS}"
        raise InputFormatError(message, str(root)) from None
    if stat.S_ISDIR(mode):
        return _read_folder(root, max_chars)
    if stat.S_ISREG(mode):
        if root.name.lower().endswith(JSONL_SUFFIXES) or _is_stream_name(root):
            return _read_jsonl(root, max_chars, layout="jsonl")
        raise InputFormatError(f"unsupported corpus file type; expected {ACCEPTED_LAYOUTS}", str(root))
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return _read_jsonl(root, max_chars, layout="jsonl")
    kind = "a socket" if stat.S_ISSOCK(mode) else "a block device" if stat.S_ISBLK(mode) else "special"
    raise InputFormatError(
        f"corpus path is {kind}, not a folder, a regular file or a pipe; expected {ACCEPTED_LAYOUTS}",
        str(root),
    )


def _is_stream_name(path: Path) -> bool:
    """``/dev/stdin`` or ``/dev/fd/N``: a redirected stdin (``< corpus.jsonl``) is a regular file there."""
    return str(path) == "/dev/stdin" or path.parent in _STREAM_FOLDERS


def _read_folder(root: Path, max_chars: int | None) -> ReadReport:
    corpus = root / "corpus.jsonl"
    if corpus.is_file():
        return _read_jsonl(corpus, max_chars, layout="beir")
    if any(p.is_file() and p.suffix.lower() in TEXT_SUFFIXES for p in _walk(root)[0]):
        return _read_text_folder(root, max_chars)
    hint = ""
    if (root / "corpus.jsonl.gz").exists():
        hint = " (found corpus.jsonl.gz: decompress it first, e.g. `gunzip corpus.jsonl.gz`)"
    raise InputFormatError(f"folder matches no corpus layout{hint}; expected {ACCEPTED_LAYOUTS}", str(root))


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # json.loads alone would keep the last value and drop the others
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


def _replace_surrogates(value: Any) -> tuple[Any, bool]:
    """``value`` with every lone surrogate in its strings (dict keys included) replaced by U+FFFD, and
    whether anything was replaced. Raises :class:`_RepeatedKey` when two keys become the same."""
    if isinstance(value, str):
        fixed = _SURROGATE.sub("\ufffd", value)
        return fixed, fixed != value
    if isinstance(value, list):
        items = [_replace_surrogates(item) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            new_key, key_changed = _replace_surrogates(key)
            new_item, item_changed = _replace_surrogates(item)
            if new_key in out:
                raise _RepeatedKey(new_key)
            out[new_key] = new_item
            changed = changed or key_changed or item_changed
        return out, changed
    return value, False


def iter_jsonl(
    path: str | Path,
    invalid_utf8_lines: list[int] | None = None,
    surrogate_lines: list[int] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every non-blank line of a JSON Lines file (lines count from 1).

    ``path`` may be a pipe; it is read once, line by line. Malformed JSON, a line that is not a JSON
    object, or an object that repeats a key raises :class:`InputFormatError` naming the file and line.
    Invalid UTF-8 bytes and escaped lone surrogates (``"\\ud800"``) are replaced by U+FFFD; pass lists
    as ``invalid_utf8_lines`` / ``surrogate_lines`` to collect the numbers of the lines where that
    happened.
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
                obj = json.loads(line, object_pairs_hook=_unique_pairs)
                if _SURROGATE_ESCAPE.search(line):
                    obj, replaced = _replace_surrogates(obj)
                    if replaced and surrogate_lines is not None:
                        surrogate_lines.append(number)
            except json.JSONDecodeError as error:
                raise InputFormatError(
                    f"malformed JSON ({error.msg} at column {error.colno}); "
                    "each line must hold one JSON object",
                    name,
                    number,
                ) from None
            except _RepeatedKey as error:
                raise InputFormatError(
                    f"key {error.key!r} appears twice in one JSON object (only one value could be kept); "
                    "rename one of them",
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
    """Accumulates documents, enforcing the shared rules (duplicates, empty, max_chars).

    Documents are kept as plain tuples and built only in :meth:`report`, once every check has passed,
    so that an input error never pays for importing haystack.
    """

    def __init__(self, max_chars: int | None) -> None:
        self.max_chars = max_chars
        self.pending: list[tuple[str, str, dict[str, Any]]] = []
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
        self.pending.append((doc_id, text, meta))

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def report(self, layout: str) -> ReadReport:
        from haystack import Document  # heavy (imports torch): only once the input is known to be good

        if self.empty_ids:
            self.warnings.append(
                f"skipped {len(self.empty_ids)} empty or whitespace-only document(s): "
                f"{_listing(self.empty_ids)}"
            )
        documents = [Document(id=doc_id, content=text, meta=meta) for doc_id, text, meta in self.pending]
        return ReadReport(documents, dict(self.skipped), list(self.warnings), layout)


def _listing(items: list[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_LISTED])
    return shown + (f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else "")


def _read_jsonl(path: Path, max_chars: int | None, layout: str) -> ReadReport:
    collector = _Collector(max_chars)
    name = str(path)
    bad_lines: list[int] = []
    surrogate_lines: list[int] = []
    for line, obj in iter_jsonl(path, invalid_utf8_lines=bad_lines, surrogate_lines=surrogate_lines):
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
        collector.add(doc_id, text, _field_meta(obj, name, line), name, line)
    if surrogate_lines:
        collector.warnings.insert(
            0,
            f"{name}: lone surrogate escapes (such as \\ud800) replaced with U+FFFD on "
            f"{len(surrogate_lines)} line(s): {_listing(surrogate_lines)}",
        )
    if bad_lines:
        collector.warnings.insert(
            0,
            f"{name}: invalid UTF-8 bytes replaced with U+FFFD on {len(bad_lines)} line(s): "
            f"{_listing(bad_lines)}",
        )
    return collector.report(layout)


def _field_meta(obj: dict[str, Any], path: str, line: int) -> dict[str, Any]:
    """Every field but the id(s) and text (and a null title), with a ``metadata`` object merged in;
    refuses reserved names and top-level / ``metadata`` clashes instead of losing a value."""
    meta: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for key, value in obj.items():
        if key in _ID_FIELDS or key == "text" or (key == "title" and value is None):
            continue
        if key == "metadata" and isinstance(value, dict):
            nested = value
        else:
            meta[key] = value
    for key in RESERVED_META_KEYS:
        for where, fields in (("field", meta), ("field 'metadata' holds", nested)):
            if key in fields:
                raise InputFormatError(
                    f"{where} {key!r}, a name reserved for chunk bookkeeping "
                    f"({', '.join(RESERVED_META_KEYS)}); rename it (for example to 'user_{key}')",
                    path,
                    line,
                )
    for key, value in nested.items():
        if key in meta and meta[key] != value:
            raise InputFormatError(
                f"field {key!r} is both a top-level field ({meta[key]!r}) and a key of 'metadata' "
                f"({value!r}); only one value could be kept, rename one of them",
                path,
                line,
            )
        meta[key] = value
    return meta


def _field_id(obj: dict[str, Any], path: str, line: int) -> str:
    keys = [k for k in _ID_FIELDS if k in obj]
    if not keys:
        present = ", ".join(sorted(obj)) or "none"
        raise InputFormatError(f"field 'id' (or '_id') is missing (fields present: {present})", path, line)
    ids = []
    for key in keys:
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, str | int):
            message = f"field {key!r} must be a string or an integer, got {_json_type(value)}"
            raise InputFormatError(message, path, line)
        doc_id = str(value)
        if not doc_id.strip():
            raise InputFormatError(f"field {key!r} is empty; every document needs an id", path, line)
        ids.append(doc_id)
    if len(set(ids)) > 1:
        raise InputFormatError(
            f"fields 'id' ({obj['id']!r}) and '_id' ({obj['_id']!r}) disagree; a document has one id: "
            "keep one of the two fields, or rename the other (e.g. 'original_id') to keep it as metadata",
            path,
            line,
        )
    return ids[0]


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
