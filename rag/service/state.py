"""The indexes a service holds: one loaded pipeline per bundle, reloaded when the bundle is swapped.

Reads never wait for writes. Each request takes the :class:`Loaded` snapshot that is current when it
starts and runs on it to the end, so it sees the old bundle or the new one, never a mix. The snapshot
is keyed by the sha256 of the bundle's ``bundle.json`` (whose generation and checksums change with every
write, also a write by another process such as ``rag add``); a request that finds the key changed
loads the new bundle into a fresh pipeline off to the side and swaps the reference, while requests
already running finish on the old one (its indexes stay in memory after their files go).

Writes go through :func:`rag.pipelines.add_to_bundle` / :func:`rag.pipelines.delete_from_bundle`, which
stage a whole new bundle under the bundle's file lock (``.NAME.lock``, across processes) and swap it in
atomically; in this process a second lock keeps writes one at a time, so they queue here instead of
in the file lock. A write reloads the snapshot before it answers, so a client reads its own writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haystack import Pipeline

from indexers.bundle import BUNDLE_MANIFEST, SIDES, read_bundle_manifest
from rag.core.config import RagConfig, load_config
from rag.core.errors import LockTimeoutError, NotFoundError, RagError
from rag.pipelines import (
    BundleSummary,
    DeleteSummary,
    add_to_bundle,
    build_pipeline,
    delete_from_bundle,
    load_bundle_config,
    read_build_summary,
)

log = logging.getLogger("rag.service")

# A bundle swapped again while it was being loaded is loaded again, at most this many times.
LOAD_ATTEMPTS = 5


@dataclass(frozen=True)
class Loaded:
    """One bundle generation, loaded: what every request on it reads."""

    pipeline: Pipeline
    config: RagConfig
    stamp: str
    generation: int
    sides: list[str]
    documents: int | None
    chunks: int | None
    loaded_at: float


class ServedIndex:
    """One bundle served under a name."""

    def __init__(
        self, name: str, path: Path, config: Path | None = None, lock_timeout: float | None = None
    ) -> None:
        self.name = name
        self.path = Path(path)
        self.config_path = config
        self.lock_timeout = lock_timeout
        self._current: Loaded | None = None
        # The bundle state that last failed to load, and why: asked again, it fails at once instead of
        # re-reading (and re-hashing) every file on every request.
        self._failed: tuple[str, Exception] | None = None
        self._reload_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.error: str | None = None

    # ------------------------------------------------------------------ reading

    @property
    def loaded(self) -> Loaded | None:
        return self._current

    def stamp(self) -> str:
        """sha256 of ``bundle.json`` (or, for a bundle written before it existed, of the side manifests)."""
        digest = hashlib.sha256()
        manifest = self.path / BUNDLE_MANIFEST
        if manifest.is_file():
            digest.update(manifest.read_bytes())
        else:
            for side in SIDES:
                side_manifest = self.path / side / "manifest.json"
                if side_manifest.is_file():
                    digest.update(side_manifest.read_bytes())
        return digest.hexdigest()

    def current(self) -> Loaded:
        """The snapshot of the bundle as it is on disk now (reloaded if it was swapped). Blocking."""
        loaded = self._current
        try:
            stamp = self.stamp()
        except OSError:
            # Mid-swap on a system without an atomic exchange: keep serving what we have.
            if loaded is not None:
                return loaded
            raise
        if loaded is not None and loaded.stamp == stamp:
            return loaded
        with self._reload_lock:
            loaded = self._current
            stamp = self.stamp()
            if loaded is not None and loaded.stamp == stamp:
                return loaded  # another request reloaded it while this one waited
            if self._failed is not None and self._failed[0] == stamp:
                raise self._failed[1]
            try:
                return self._reload()
            except RagError as exc:
                self._failed = (stamp, exc)
                raise

    def _reload(self) -> Loaded:
        for _ in range(LOAD_ATTEMPTS):
            before = self.stamp()
            started = time.perf_counter()
            manifest = read_bundle_manifest(self.path)  # checks every checksum
            config = load_config(self.config_path) if self.config_path else load_bundle_config(self.path)
            pipeline = build_pipeline(config, self.path)
            pipeline.warm_up()
            if self.stamp() != before:
                continue  # swapped while loading: its sides may come from two writes
            summary = read_build_summary(self.path)
            loaded = Loaded(
                pipeline=pipeline,
                config=config,
                stamp=before,
                generation=int(manifest.get("generation", 0)),
                sides=list(manifest.get("sides", [])),
                documents=summary.documents if summary else None,
                chunks=summary.chunks if summary else None,
                loaded_at=time.time(),
            )
            self._current = loaded
            self.error = None
            log.info(
                "index %s: generation %d loaded in %.2f s",
                self.name,
                loaded.generation,
                time.perf_counter() - started,
            )
            return loaded
        raise LockTimeoutError(
            f"index {self.name!r} changed {LOAD_ATTEMPTS} times while it was being loaded; try again"
        )

    # ------------------------------------------------------------------ writing

    def add(self, documents: Sequence[dict[str, Any]]) -> tuple[BundleSummary, Loaded]:
        """Add documents (records as in a JSONL corpus: ``id``, ``text``, ``title``, ``metadata``)."""
        with self._writing():
            # Through a JSONL file, so the posted records meet exactly the input rules of `rag add`.
            with tempfile.TemporaryDirectory(prefix="rag-serve-") as folder:
                corpus = Path(folder) / "documents.jsonl"
                with open(corpus, "w", encoding="utf-8") as handle:
                    for record in documents:
                        # ASCII escapes: a lone surrogate a client sent stays an escape that the
                        # reader replaces (and warns about) instead of a str that cannot be written.
                        handle.write(json.dumps(record) + "\n")
                summary = add_to_bundle(
                    self.path, corpus, progress=False, notify=self._notify, lock_timeout=self.lock_timeout
                )
            return summary, self._refresh()

    def delete(self, ids: Sequence[str]) -> tuple[DeleteSummary, Loaded]:
        with self._writing():
            chunk_ids, source_ids = _stored_ids(self.current().pipeline)
            unknown = [i for i in ids if i not in source_ids and i not in chunk_ids]
            if unknown:
                raise NotFoundError(f"index {self.name!r} has no document or chunk with id {unknown[0]!r}")
            summary = delete_from_bundle(
                self.path, list(ids), notify=self._notify, lock_timeout=self.lock_timeout
            )
            return summary, self._refresh()

    def _refresh(self) -> Loaded:
        with self._reload_lock:
            return self._reload()

    def _writing(self) -> _WriteTurn:
        return _WriteTurn(self)

    def _notify(self, message: str) -> None:
        log.info("index %s: %s", self.name, message)


class _WriteTurn:
    """This process's turn to write to an index: one writer at a time, waiting at most the lock timeout."""

    def __init__(self, index: ServedIndex) -> None:
        self.index = index

    def __enter__(self) -> None:
        from indexers.bundle import lock_timeout_seconds

        wait = lock_timeout_seconds(self.index.lock_timeout)
        if not self.index._write_lock.acquire(timeout=wait):
            raise LockTimeoutError(
                f"another write to index {self.index.name!r} took longer than {wait:.0f} s; nothing was "
                "changed, try again"
            )

    def __exit__(self, *exc: object) -> None:
        self.index._write_lock.release()


def _stored_ids(pipeline: Pipeline) -> tuple[frozenset[str], frozenset[str]]:
    """Chunk ids and source-document ids of the first index a pipeline's retrievers read."""
    from rag.retrievers.base import IndexBackedRetriever

    for _, component in pipeline.walk():
        if isinstance(component, IndexBackedRetriever):
            index = component.index
            stored = index.get(index.ids)
            return frozenset(index.ids), frozenset(str(d.meta.get("source_id", d.id)) for d in stored)
    return frozenset(), frozenset()


class ServiceState:
    """Every index a service holds, by name."""

    def __init__(
        self, indexes: dict[str, Path], config: Path | None = None, lock_timeout: float | None = None
    ) -> None:
        self.indexes = {name: ServedIndex(name, path, config, lock_timeout) for name, path in indexes.items()}

    def get(self, name: str) -> ServedIndex:
        served = self.indexes.get(name)
        if served is None:
            raise NotFoundError(
                f"no index named {name!r}; this server serves: {', '.join(sorted(self.indexes))}"
            )
        return served

    def load_all(self) -> None:
        """Load every index (at start); a failure is kept on the index and shown by ``/ready``."""
        for served in self.indexes.values():
            try:
                served.current()
            except Exception as exc:  # noqa: BLE001 - reported by /ready, the server keeps running
                served.error = f"{type(exc).__name__}: {exc}"
                log.error("index %s could not be loaded: %s", served.name, served.error)

    @property
    def ready(self) -> bool:
        return all(s.loaded is not None for s in self.indexes.values())
