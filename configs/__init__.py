"""The ready-made pipeline configs, shipped with the package so that they work outside the repository.

Every command that takes ``--config`` accepts a bare name (``--config dense``) as well as a path;
``rag configs`` lists the names with the first comment line of each file.

>>> "dense" in available()
True
>>> config_path("bm25").name
'bm25.yaml'
>>> resolve("dense") == config_path("dense")
True
"""

from __future__ import annotations

from pathlib import Path

from rag.core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped configs (file names without ``.yaml``), sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(name: str) -> Path:
    """The file of the shipped config ``name``; a :class:`ConfigError` listing the names if there is none."""
    path = CONFIG_DIR / f"{name}.yaml"
    if name not in available():
        raise ConfigError(
            f"{name!r} is neither a config file nor a ready-made config; ready-made ones: "
            f"{', '.join(available())} (`rag configs` describes them), or give the path of a YAML file"
        )
    return path


def resolve(value: str | Path) -> Path:
    """The YAML file a ``--config`` value names: an existing path as given, else a shipped config by name.

    A value with a ``/`` or a ``.yaml`` / ``.yml`` suffix is always a path, so a mistyped path is reported
    by the loader as a missing file rather than here as an unknown name.
    """
    path = Path(value)
    text = str(value)
    if path.exists() or "/" in text or path.suffix in (".yaml", ".yml"):
        return path
    return config_path(text)


def description(name: str) -> str:
    """The first comment line of the shipped config ``name`` (what the file says it is), or ``""``."""
    for line in config_path(name).read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
        if stripped:
            return ""  # the file starts with content, not with a comment
    return ""
