"""Checks shared by the config loader, the retrievers, the encoders and the index parameters.

The config is declared once, as dataclasses with annotated fields (:mod:`rag.core.config`);
:func:`check_fields` reads those annotations and checks a mapping against them, so a new setting needs
one annotated line and no checking code. Numbers are never coerced from strings (``"32"`` is refused, not
read as 32), ``true`` is not an integer, and an integer is a fine float.

A field's ``metadata`` may add bounds and an example for messages: ``{"minimum": 1}``,
``{"maximum": 1}``, ``{"example": 256}``.

>>> from dataclasses import dataclass
>>> @dataclass
... class Demo:
...     top_k: int = 10
>>> check_fields(Demo, {"top_k": 5}, "demo.yaml")
{'top_k': 5}
>>> check_fields(Demo, {"top_k": "ten"}, "demo.yaml")
Traceback (most recent call last):
...
rag.core.errors.ConfigError: demo.yaml: top_k must be an integer, got 'ten' (str); write e.g. top_k: 10
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from rag.core.errors import ConfigError


def check_query(query: Any) -> str:
    """An empty or non-string query is a caller error, reported as such."""
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"query must be a non-empty string, got {query!r}")
    return query


def check_top_k(top_k: Any) -> int:
    return positive_int(top_k, "top_k")


# ------------------------------------------------------------------ small shared checks


def is_int(value: Any) -> bool:
    """An integer that is not a bool (YAML's ``true`` is a Python ``bool``, a subclass of ``int``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any, name: str) -> int:
    """``value`` if it is an integer >= 1, else :class:`ConfigError` naming ``name`` and the value."""
    if not is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(value: Any, name: str) -> int:
    """``value`` if it is an integer >= 0, else :class:`ConfigError` naming ``name`` and the value."""
    if not is_int(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_keys(mapping: Mapping[str, Any], allowed: Collection[str], where: str, what: str = "key") -> None:
    """Refuse keys outside ``allowed``, listing the allowed ones and the closest match of each typo.

    ``where`` starts the message (a file and section, e.g. ``"config.yaml: retrieval"``), if not empty.

    >>> try:
    ...     check_keys({"top_kk": 3}, ["mode", "top_k"], "retrieval")
    ... except ConfigError as exc:
    ...     print(exc)
    retrieval: unknown key(s) 'top_kk' (did you mean 'top_k'?); allowed: mode, top_k
    """
    unknown = sorted((key for key in mapping if key not in allowed), key=str)
    if not unknown:
        return
    by_lower = {str(a).lower(): str(a) for a in allowed}
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key).lower(), list(by_lower), n=1)
        if close:
            hints.append(repr(by_lower[close[0]]))
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    lead = f"{where}: " if where else ""
    raise ConfigError(
        f"{lead}unknown {what}(s) {', '.join(repr(k) for k in unknown)}{hint}; "
        f"allowed: {', '.join(sorted(str(a) for a in allowed)) or 'none'}"
    )


def load_yaml_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping; an empty file is ``{}``.

    A missing file, invalid YAML or another top level (a list, a number) is a :class:`ConfigError` naming
    the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys to values (key: value lines), "
            f"got {_describe(data)}"
        )
    return data


# ------------------------------------------------------------------ typed fields


def check_fields(cls: type, mapping: Any, where: str, prefix: str = "") -> dict[str, Any]:
    """Check ``mapping`` against the annotated fields of the dataclass ``cls``; return the checked values.

    Only the keys present in ``mapping`` are returned (defaults stay the dataclass's business). Ints
    given for ``float`` fields come back as floats, tuples for ``list`` fields as lists; nothing else is
    converted. A field typed with another dataclass takes a mapping (checked recursively and built into
    an instance), an instance of it, or ``None`` (left out: the default applies). Checks that involve
    several fields live in an optional ``check_together(values, where, prefix) -> values`` static
    method of ``cls``, called last.

    :param where: what the message starts with, usually the file name.
    :param prefix: the dotted path of ``mapping`` inside the file (``"retrieval"``), for messages.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(mapping, Mapping):
        if not prefix:
            raise ConfigError(
                f"{where}: the top level must be a mapping with keys among {', '.join(fields)}, "
                f"got {_describe(mapping)}"
            )
        raise ConfigError(
            f"{where}: {prefix} must be a mapping, got {_describe(mapping)}; "
            f"write e.g. {_example_line(prefix, _default_example(cls))}"
        )
    check_keys(mapping, fields, f"{where}: {prefix}" if prefix else where)
    hints = typing.get_type_hints(cls)
    checked: dict[str, Any] = {}
    for name, value in mapping.items():
        spec = fields[name]
        path = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if _is_dataclass_type(hint):
            if value is None:
                continue
            if isinstance(value, hint):
                checked[name] = value
                continue
            checked[name] = hint(**check_fields(hint, value, where, path))
            continue
        example = _field_example(spec)
        if example is None:
            example = _type_example(hint)
        checked[name] = check_value(value, hint, where, path, example, spec.metadata)
    together = getattr(cls, "check_together", None)
    if together is not None:
        checked = together(checked, where, prefix)
    return checked


def check_instance(obj: Any) -> None:
    """Check a dataclass instance's own fields as :func:`check_fields` checks a mapping.

    Meant for ``__post_init__``: a section built in Python gets the same checks as one read from YAML.
    Fields typed with a dataclass must hold an instance of it (use ``from_dict`` for mappings).
    """
    cls = type(obj)
    where = cls.__name__
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    for name, hint in typing.get_type_hints(cls).items():
        if name in values and _is_dataclass_type(hint) and not isinstance(values[name], hint):
            raise ConfigError(
                f"{where}: {name} must be a {hint.__name__}, got {_describe(values[name])}; "
                f"build it with {hint.__name__}(...) or load the whole config with {where}.from_dict"
            )
    check_fields(cls, values, where)


def check_value(
    value: Any,
    hint: Any,
    where: str,
    path: str,
    example: Any = None,
    limits: Mapping[str, Any] | None = None,
) -> Any:
    """Check one value against a type annotation and the limits of its field; return it checked.

    Supports ``int``, ``float``, ``bool``, ``str``, ``Any``, ``X | None`` and other unions, ``list[X]``,
    ``dict[K, V]``. ``limits`` (a field's metadata) may hold ``minimum`` / ``maximum`` (numbers),
    ``choices`` (a tuple of allowed values, with an optional ``hint``), ``pattern`` (a regular expression
    a string must match in full, described by ``allowed``) and ``non_empty`` (lists).
    """
    limits = limits or {}
    fix = f"; write e.g. {_example_line(path, example)}" if example is not None else ""
    lead = f"{where}: {path}" if where else path
    ok, converted = _matches(value, hint)
    if ok and limits.get("non_empty") and isinstance(converted, list) and not converted:
        ok = False
    if not ok:
        raise ConfigError(f"{lead} must be {_expected(hint, limits)}, got {_describe(value)}{fix}")
    if is_int(converted) or isinstance(converted, float):
        low, high = limits.get("minimum"), limits.get("maximum")
        if (low is not None and converted < low) or (high is not None and converted > high):
            raise ConfigError(f"{lead} must be {_expected(hint, limits)}, got {converted!r}{fix}")
    choices = limits.get("choices")
    if choices is not None and converted not in choices:
        hint_text = f" ({limits['hint']})" if "hint" in limits else ""
        raise ConfigError(
            f"{lead} must be one of {', '.join(map(str, choices))}, got {converted!r}{hint_text}"
        )
    pattern = limits.get("pattern")
    if pattern is not None and isinstance(converted, str) and not re.fullmatch(pattern, converted):
        raise ConfigError(f"{lead} must be {limits.get('allowed', pattern)}, got {converted!r}{fix}")
    return converted


def _matches(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits ``hint``, and the value as stored (int -> float, tuple -> list)."""
    if hint is Any:
        return True, value
    if hint is type(None):
        return value is None, value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, converted = _matches(value, option)
            if ok:
                return True, converted
        return False, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return is_int(value), value
    if hint is float:
        if is_int(value):
            return True, float(value)
        return isinstance(value, float), value
    if hint is str:
        return isinstance(value, str), value
    if origin is list:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            return False, value
        (item,) = typing.get_args(hint) or (Any,)
        items = []
        for element in value:
            ok, converted = _matches(element, item)
            if not ok:
                return False, value
            items.append(converted)
        return True, items
    if origin is dict:
        if not isinstance(value, Mapping):
            return False, value
        key_type, value_type = typing.get_args(hint) or (Any, Any)
        out = {}
        for key, element in value.items():
            key_ok, _ = _matches(key, key_type)
            ok, converted = _matches(element, value_type)
            if not (key_ok and ok):
                return False, value
            out[key] = converted
        return True, out
    raise TypeError(f"check_value does not support the annotation {hint!r}")  # a bug in a declaration


def _expected(hint: Any, limits: Mapping[str, Any]) -> str:
    """Words for what ``hint`` (with its bounds) accepts: 'a positive integer', 'true or false', ..."""
    if hint is Any:
        return "anything"
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        words = [_expected(o, limits) for o in options if o is not type(None)]
        if type(None) in options:
            words.append("null")
        return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    if hint is bool:
        return "true or false"
    if hint in (int, float):
        noun = "integer" if hint is int else "number"
        low, high = limits.get("minimum"), limits.get("maximum")
        if low is not None and high is not None:
            return f"a{'n' if hint is int else ''} {noun} from {low} to {high}"
        if low == 1 and hint is int:
            return "a positive integer"
        if low == 0:
            return f"a non-negative {noun}"
        if low is not None:
            return f"a{'n' if hint is int else ''} {noun} of at least {low}"
        return f"a{'n' if hint is int else ''} {noun}"
    if hint is str:
        return "a string"
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        kind = "a non-empty list" if limits.get("non_empty") else "a list"
        return kind if item is Any else f"{kind} of {_plural(_expected(item, {}))}"
    if origin is dict:
        return "a mapping"
    return repr(hint)


def _plural(words: str) -> str:
    return words.removeprefix("a ").removeprefix("an ") + "s"


def _describe(value: Any) -> str:
    """A value and its type for messages: ``'ten' (str)``, ``[1.2, 0.75] (list)``, ``true (bool)``."""
    shown = _inline(value) if isinstance(value, bool) or value is None else repr(value)  # YAML's words
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{shown} ({type(value).__name__})"


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _field_example(spec: dataclasses.Field[Any]) -> Any:
    """The example a message suggests: the declared one, else the default unless it is empty."""
    if "example" in spec.metadata:
        return spec.metadata["example"]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        default = spec.default_factory()
        return default if default or not isinstance(default, list) else None
    return None


def _type_example(hint: Any) -> Any:
    """A value of ``hint``'s first non-null option, for the example in a message."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        return _type_example(options[0]) if options else None
    samples: dict[Any, Any] = {int: 1, float: 1.0, bool: True, str: "text"}
    if hint in samples:
        return samples[hint]
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (str,)
        return [_type_example(item)]
    if typing.get_origin(hint) is dict:
        return {}
    return None


def _default_example(cls: type) -> Any:
    """The dataclass's defaults as a mapping (the example for a section that is not a mapping)."""
    try:
        return dataclasses.asdict(cls())
    except TypeError:  # a field without a default
        return {}


def _example_line(path: str, example: Any) -> str:
    key = path.rsplit(".", 1)[-1] if path else ""
    shown = _inline(example)
    return f"{key}: {shown}" if key else shown


def _inline(value: Any) -> str:
    """``value`` as one line of YAML flow style, keys in their declared order."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # Plain words stay bare; anything YAML could misread (empty, spaces, newlines) gets JSON quotes.
        plain = re.fullmatch(r"[A-Za-z_][\w.:/+-]*", value) and value.lower() not in ("null", "true", "false")
        return value if plain else json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return repr(value)
