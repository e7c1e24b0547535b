"""One small error family, so callers can catch ours apart from library errors.

Every message says what was wrong and what to do about it.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(RagError, ValueError):
    """A configuration value or argument is invalid (names the key and the allowed values)."""


class InputFormatError(RagError, ValueError):
    """An input file cannot be read as the expected format. Names the file and, where known, the line."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class IndexCorruptError(RagError):
    """An index folder is missing a file, or a file does not match its checksum in the manifest."""


class EncoderMismatchError(RagError):
    """The query encoder does not match the encoder an index was built with."""


class ModelNotAvailableError(RagError):
    """A model cannot be found locally and cannot be downloaded (offline)."""
