"""Every error carries its exit code and HTTP status; IndexCorruptError ends with its fix, once."""

from __future__ import annotations

import pickle

import pytest

from rag.core.errors import (
    ChatEndpointError,
    ConfigError,
    EncoderMismatchError,
    IndexCorruptError,
    InputFormatError,
    LockTimeoutError,
    ModelNotAvailableError,
    NotFoundError,
    RagError,
    error_status,
)

HINT = "Rebuild the index with `rag index`."


@pytest.mark.parametrize(
    ("error", "codes"),
    [
        (RagError("x"), (2, 500)),
        (ConfigError("x"), (2, 400)),
        (InputFormatError("x", "a.jsonl", 3), (2, 422)),
        (EncoderMismatchError("x"), (2, 409)),
        (NotFoundError("x"), (2, 404)),
        (IndexCorruptError("x"), (3, 500)),
        (ModelNotAvailableError("x"), (4, 503)),
        (LockTimeoutError("x"), (5, 503)),
        (ChatEndpointError("x"), (6, 502)),
        (ValueError("x"), (1, 500)),
        (KeyboardInterrupt(), (1, 500)),
    ],
)
def test_each_class_has_its_codes(error: BaseException, codes: tuple[int, int]) -> None:
    assert error_status(error) == codes
    assert (getattr(error, "exit_code", 1), getattr(error, "http_status", 500)) == codes


def test_a_subclass_inherits_its_parents_codes_unless_it_declares_its_own() -> None:
    class UnknownDocument(NotFoundError):
        pass

    class Unsupported(RagError, NotImplementedError):
        http_status = 501

    assert error_status(UnknownDocument("'d9' is not in the index")) == (2, 404)
    assert error_status(Unsupported("BM25 holds no vectors")) == (2, 501)
    # str() is the message, not KeyError's repr of it
    assert str(UnknownDocument("'d9' is not in the index")) == "'d9' is not in the index"
    assert isinstance(UnknownDocument("x"), KeyError) and isinstance(ConfigError("x"), ValueError)


def test_exit_codes_are_distinct_where_they_are_not_user_errors() -> None:
    special = [IndexCorruptError, ModelNotAvailableError, LockTimeoutError, ChatEndpointError]
    codes = [cls.exit_code for cls in special]
    assert len(set(codes)) == len(codes) and 2 not in codes and 1 not in codes


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("index file x/ids.jsonl is missing.", f"index file x/ids.jsonl is missing. {HINT}"),
        ("index file x/ids.jsonl is missing", f"index file x/ids.jsonl is missing. {HINT}"),
        (
            "x/manifest.json: format_version must be an integer, got 'a'  ",
            f"x/manifest.json: format_version must be an integer, got 'a'. {HINT}",
        ),
        # Already says how to fix it: the message stays as it is.
        (f"index file x is missing. {HINT}", f"index file x is missing. {HINT}"),
        (
            "bundle x is gone; build one with `rag index --config ...`",
            "bundle x is gone; build one with `rag index --config ...`",
        ),
        (
            "bundle x was interrupted; the next `rag add` restores it",
            "bundle x was interrupted; the next `rag add` restores it",
        ),
        (
            "format 9 is too new. Upgrade rag-pipelines, or rebuild",
            "format 9 is too new. Upgrade rag-pipelines, or rebuild",
        ),
    ],
)
def test_index_corrupt_error_appends_its_hint_once(message: str, shown: str) -> None:
    error = IndexCorruptError(message)
    assert str(error) == shown
    assert str(error).count("`rag ") == shown.count("`rag ")
    # Raised again from its own message (pickling, re-raising across processes): still one hint.
    assert str(pickle.loads(pickle.dumps(error))) == shown


def test_index_corrupt_error_takes_another_hint() -> None:
    assert str(IndexCorruptError("qdrant://host/c is gone", hint="Recreate the collection.")) == (
        "qdrant://host/c is gone. Recreate the collection."
    )
    assert str(IndexCorruptError("inconsistent", hint="")) == "inconsistent"
