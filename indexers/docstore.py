"""Ordered documents of an index, persisted as ``documents.jsonl``.

Each line is one JSON object ``{"id": ..., "content": ..., "meta": {...}}``, in index order: row ``i`` of
the vectors (or of the BM25 matrix) belongs to line ``i``. JSON, not pickle, so loading never runs code.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from haystack import Document

from indexers.manifest import REBUILD_HINT
from rag.core.errors import ConfigError, IndexCorruptError, RagError

DOCUMENTS_FILE = "documents.jsonl"
_SHOWN = 10


class UnknownDocumentError(RagError, KeyError):
    """Document ids asked for (to get or delete) are not in the index."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; keep the plain message instead.
        return str(self.args[0]) if self.args else ""


def format_ids(ids: Sequence[str]) -> str:
    """The first few ids of a list, for error messages (``'a', 'b' and 3 more``)."""
    shown = ", ".join(repr(i) for i in ids[:_SHOWN])
    return shown + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


def duplicate_ids(ids: Iterable[str], existing: Iterable[str] = ()) -> list[str]:
    """Ids that occur twice in ``ids`` or already in ``existing``, in first-seen order."""
    seen = set(existing)
    dupes: dict[str, None] = {}
    for doc_id in ids:
        if doc_id in seen:
            dupes[doc_id] = None
        seen.add(doc_id)
    return list(dupes)


def id_list(ids: Iterable[str]) -> list[str]:
    """``ids`` as a list without repeats (first occurrence kept); a bare string is refused."""
    if isinstance(ids, str):
        raise ConfigError(f"expected a list of document ids, got the string {ids!r}; wrap it: [{ids!r}]")
    return list(dict.fromkeys(ids))


class DocStore:
    """Documents in insertion order with lookup by id.

    Stores ``id``, ``content`` and ``meta`` of each :class:`haystack.Document` (scores and embeddings are
    not kept: vectors live in the index). ``get`` returns fresh copies, so callers may edit them.
    """

    def __init__(self, documents: Sequence[Document] = ()) -> None:
        self._docs: list[Document] = []
        self._position: dict[str, int] = {}
        self.add(documents)

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._position

    def __iter__(self) -> Iterator[Document]:
        return (_copy(doc) for doc in self._docs)

    @property
    def ids(self) -> list[str]:
        """Document ids in index order."""
        return [doc.id for doc in self._docs]

    def position(self, doc_id: str) -> int:
        """Row of ``doc_id`` in index order."""
        return self._position[doc_id]

    def id_at(self, position: int) -> str:
        return self._docs[position].id

    def check_new_ids(self, documents: Sequence[Document]) -> None:
        """Raise :class:`ConfigError` listing ids that repeat within ``documents`` or are already stored."""
        for position, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise ConfigError(
                    f"documents must be haystack Document objects; item {position} is {type(doc).__name__}"
                )
        dupes = duplicate_ids((doc.id for doc in documents), self._position)
        if dupes:
            raise ConfigError(
                f"{len(dupes)} document id(s) are duplicated or already in the index: {format_ids(dupes)}. "
                f"Give every document a unique id, or delete the old ones first."
            )

    def add(self, documents: Sequence[Document]) -> None:
        """Append documents; all-or-nothing when an id is duplicated."""
        self.check_new_ids(documents)
        stored = [_normalized(doc) for doc in documents]
        for doc in stored:
            self._position[doc.id] = len(self._docs)
            self._docs.append(doc)

    def missing(self, ids: Iterable[str]) -> list[str]:
        """The ids (deduplicated, in order) that are not stored."""
        return list(dict.fromkeys(i for i in ids if i not in self._position))

    def positions(self, ids: Iterable[str], action: str = "get") -> list[int]:
        """Rows of these ids (repeats count once), sorted; unknown ids raise :class:`UnknownDocumentError`."""
        wanted = id_list(ids)
        unknown = self.missing(wanted)
        if unknown:
            raise UnknownDocumentError(
                f"cannot {action} {len(unknown)} document id(s) that are not in the index: "
                f"{format_ids(unknown)}" + (". Nothing was deleted." if action == "delete" else "")
            )
        return sorted(self._position[i] for i in wanted)

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Copies of the documents with these ids, in the order asked.

        Raises :class:`UnknownDocumentError` listing every unknown id.
        """
        self.positions(ids, action="get")
        return [_copy(self._docs[self._position[i]]) for i in ids]

    def delete(self, ids: Iterable[str]) -> list[int]:
        """Remove documents and return their former rows (sorted). Unknown ids raise before any change."""
        rows = self.positions(ids, action="delete")
        drop = set(rows)
        self._docs = [doc for row, doc in enumerate(self._docs) if row not in drop]
        self._position = {doc.id: row for row, doc in enumerate(self._docs)}
        return rows

    def save(self, path: str | Path) -> None:
        """Write the documents as JSON lines to ``path`` (a file)."""
        with open(path, "w", encoding="utf-8") as handle:
            for doc in self._docs:
                record = {"id": doc.id, "content": doc.content, "meta": doc.meta}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DocStore:
        """Read a ``documents.jsonl`` file; :class:`IndexCorruptError` names the file and line on failure."""
        file_path = Path(path)
        docs: list[Document] = []
        try:
            with open(file_path, encoding="utf-8") as handle:
                for line_no, line in enumerate(handle, start=1):
                    docs.append(_parse_line(line, file_path, line_no))
        except FileNotFoundError as exc:
            raise IndexCorruptError(f"index file {file_path} is missing. {REBUILD_HINT}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise IndexCorruptError(f"index file {file_path} cannot be read ({exc}). {REBUILD_HINT}") from exc
        try:
            return cls(docs)
        except ConfigError as exc:
            raise IndexCorruptError(f"index file {file_path}: {exc}. {REBUILD_HINT}") from exc


def _parse_line(line: str, file_path: Path, line_no: int) -> Document:
    where = f"index file {file_path}, line {line_no}"
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise IndexCorruptError(f"{where} is not valid JSON ({exc}). {REBUILD_HINT}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise IndexCorruptError(f"{where} must be an object with a string 'id'. {REBUILD_HINT}")
    content = record.get("content")
    meta = record.get("meta") or {}
    if (content is not None and not isinstance(content, str)) or not isinstance(meta, dict):
        raise IndexCorruptError(f"{where}: 'content' must be a string and 'meta' an object. {REBUILD_HINT}")
    return Document(id=record["id"], content=content, meta=meta)


def _normalized(doc: Document) -> Document:
    # Round-trip meta through JSON at insertion, so a document reads the same before and after save/load
    # (tuples become lists) and a meta that cannot be saved fails now, naming the document.
    if doc.content is not None and not isinstance(doc.content, str):
        kind = type(doc.content).__name__
        raise ConfigError(f"document {doc.id!r} has content of type {kind}; expected str")
    try:
        meta = json.loads(json.dumps(doc.meta or {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"document {doc.id!r} has metadata that is not JSON-serializable ({exc}); "
            f"keep meta to strings, numbers, booleans, lists and dicts"
        ) from exc
    return Document(id=doc.id, content=doc.content, meta=meta)


def _copy(doc: Document) -> Document:
    return Document(id=doc.id, content=doc.content, meta=copy.deepcopy(doc.meta))


class DocStoreBacked:
    """Document access shared by every index type: each keeps its documents in a :class:`DocStore`."""

    _docstore: DocStore

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Copies of the stored documents, in the order asked; unknown ids raise ``UnknownDocumentError``."""
        return self._docstore.get(ids)

    @property
    def ids(self) -> list[str]:
        """Document ids in index order."""
        return self._docstore.ids

    def __len__(self) -> int:
        return len(self._docstore)
