from __future__ import annotations

import doctest
from dataclasses import dataclass, field
from typing import Any

import pytest

import rag.core.config
import rag.core.validation
from rag.core.errors import ConfigError
from rag.core.validation import (
    check_fields,
    check_instance,
    check_keys,
    check_top_k,
    load_yaml_mapping,
    non_negative_int,
    positive_int,
)


@dataclass(frozen=True)
class Inner:
    size: int = field(default=3, metadata={"minimum": 1})


@dataclass(frozen=True)
class Demo:
    count: int = 10
    ratio: float = field(default=0.5, metadata={"minimum": 0, "maximum": 1})
    flag: bool = True
    label: str = "x"
    limit: int | None = field(default=None, metadata={"minimum": 1, "example": 256})
    words: list[str] = field(default_factory=list)
    either: str | list[str] | None = "en"
    table: dict[str, Any] = field(default_factory=dict)
    kind: str = field(default="a", metadata={"choices": ("a", "b")})
    device: str = field(
        default="cpu", metadata={"pattern": r"cpu|cuda(:[0-9]+)?", "allowed": "cpu or cuda[:N]"}
    )
    items: list[str] | None = field(default=None, metadata={"non_empty": True})
    inner: Inner = field(default_factory=Inner)


def test_valid_values_pass_and_only_given_keys_come_back():
    given = {
        "count": 3,
        "ratio": 1,  # an int is a fine float, and is stored as one
        "flag": False,
        "limit": None,
        "words": ("a", "b"),  # a tuple is a fine list
        "either": ["x"],
        "table": {"k": [1]},
        "kind": "b",
        "device": "cuda:2",
        "inner": {"size": 5},
    }
    checked = check_fields(Demo, given, "demo.yaml")
    assert checked == {**given, "ratio": 1.0, "words": ["a", "b"], "inner": Inner(5)}
    assert isinstance(checked["ratio"], float) and isinstance(checked["words"], list)
    assert check_fields(Demo, {}, "demo.yaml") == {}
    assert check_fields(Demo, {"inner": None}, "demo.yaml") == {}  # an empty section: defaults apply
    assert check_fields(Demo, {"inner": Inner(2)}, "demo.yaml") == {"inner": Inner(2)}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"count": "10"}, "demo.yaml: count must be an integer, got '10' (str); write e.g. count: 10"),
        ({"count": True}, "demo.yaml: count must be an integer, got true (bool); write e.g. count: 10"),
        ({"count": 2.0}, "demo.yaml: count must be an integer, got 2.0 (float); write e.g. count: 10"),
        (
            {"ratio": "0.5"},
            "demo.yaml: ratio must be a number from 0 to 1, got '0.5' (str); write e.g. ratio: 0.5",
        ),
        (
            {"ratio": False},
            "demo.yaml: ratio must be a number from 0 to 1, got false (bool); write e.g. ratio: 0.5",
        ),
        ({"ratio": 1.5}, "demo.yaml: ratio must be a number from 0 to 1, got 1.5; write e.g. ratio: 0.5"),
        ({"flag": "no"}, "demo.yaml: flag must be true or false, got 'no' (str); write e.g. flag: true"),
        ({"flag": 0}, "demo.yaml: flag must be true or false, got 0 (int); write e.g. flag: true"),
        ({"label": 3}, "demo.yaml: label must be a string, got 3 (int); write e.g. label: x"),
        ({"limit": 0}, "demo.yaml: limit must be a positive integer or null, got 0; write e.g. limit: 256"),
        (
            {"words": "a b"},
            "demo.yaml: words must be a list of strings, got 'a b' (str); write e.g. words: [text]",
        ),
        (
            {"words": ["a", 1]},
            "demo.yaml: words must be a list of strings, got ['a', 1] (list); write e.g. words: [text]",
        ),
        (
            {"either": 3},
            "demo.yaml: either must be a string, a list of strings or null, got 3 (int); "
            "write e.g. either: en",
        ),
        ({"table": [1]}, "demo.yaml: table must be a mapping, got [1] (list); write e.g. table: {}"),
        ({"kind": "c"}, "demo.yaml: kind must be one of a, b, got 'c'"),
        ({"device": "gpu"}, "demo.yaml: device must be cpu or cuda[:N], got 'gpu'; write e.g. device: cpu"),
        (
            {"items": []},
            "demo.yaml: items must be a non-empty list of strings or null, got [] (list); "
            "write e.g. items: [text]",
        ),
        ({"inner": 5}, "demo.yaml: inner must be a mapping, got 5 (int); write e.g. inner: {size: 3}"),
        (
            {"inner": {"size": 0}},
            "demo.yaml: inner.size must be a positive integer, got 0; write e.g. size: 3",
        ),
        (
            {"inner": {"sise": 1}},
            "demo.yaml: inner: unknown key(s) 'sise' (did you mean 'size'?); allowed: size",
        ),
    ],
)
def test_wrong_values_are_refused_naming_key_value_type_and_fix(given, message):
    with pytest.raises(ConfigError) as caught:
        check_fields(Demo, given, "demo.yaml")
    assert str(caught.value) == message


def test_a_top_level_that_is_not_a_mapping_lists_the_keys():
    with pytest.raises(
        ConfigError, match=r"^f: the top level must be a mapping with keys among count, ratio.*got \[1\]"
    ):
        check_fields(Demo, [1], "f")


def test_check_together_runs_after_the_fields():
    @dataclass(frozen=True)
    class Pair:
        low: int = 0
        high: int = 1

        @staticmethod
        def check_together(values: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
            if values.get("low", 0) > values.get("high", 1):
                raise ConfigError(f"{where}: low must not exceed high")
            return values

    assert check_fields(Pair, {"low": 1, "high": 2}, "p") == {"low": 1, "high": 2}
    with pytest.raises(ConfigError, match="p: low must not exceed high"):
        check_fields(Pair, {"low": 3}, "p")
    with pytest.raises(ConfigError, match="p: low must be an integer"):  # types first
        check_fields(Pair, {"low": "3"}, "p")


def test_check_instance_applies_the_same_checks_to_a_built_object():
    @dataclass(frozen=True)
    class Holder:
        inner: Inner = field(default_factory=Inner)
        count: int = 1

        def __post_init__(self) -> None:
            check_instance(self)

    Holder()
    with pytest.raises(ConfigError, match=r"^Holder: count must be an integer, got '1' \(str\)"):
        Holder(count="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^Holder: inner must be a Inner, got \{'size': 1\} \(dict\)"):
        Holder(inner={"size": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3", None])
def test_positive_int_refuses(value):
    with pytest.raises(
        ConfigError, match=rf"^batch_size must be a positive integer, got {value!r}$".replace("(", r"\(")
    ):
        positive_int(value, "batch_size")


def test_positive_and_non_negative_ints_and_top_k():
    assert positive_int(3, "n") == 3 and non_negative_int(0, "n") == 0 and check_top_k(5) == 5
    with pytest.raises(ConfigError, match="overlap must be a non-negative integer, got -1"):
        non_negative_int(-1, "overlap")
    with pytest.raises(ConfigError, match="overlap must be a non-negative integer, got False"):
        non_negative_int(False, "overlap")
    with pytest.raises(ConfigError, match="top_k must be a positive integer, got True"):
        check_top_k(True)


def test_check_keys_suggests_the_closest_allowed_key():
    check_keys({"a": 1}, ["a", "b"], "w")
    with pytest.raises(
        ConfigError,
        match=r"^w: unknown key\(s\) 'Ef_Serch' \(did you mean 'ef_search'\?\); allowed: ef_search, m$",
    ):
        check_keys({"Ef_Serch": 1}, ["m", "ef_search"], "w")
    with pytest.raises(ConfigError, match=r"^unknown flat index parameter\(s\) 'm'; allowed: none$"):
        check_keys({"m": 1}, [], "", what="flat index parameter")


def test_load_yaml_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    assert load_yaml_mapping(path) == {"a": 1}
    path.write_text("", encoding="utf-8")
    assert load_yaml_mapping(path) == {}
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"c\.yaml: the top level must be a mapping .*got \['a', 'b'\] \(list\)"
    ):
        load_yaml_mapping(path)
    path.write_text("a: [1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML"):
        load_yaml_mapping(path)
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: not a UTF-8 text file"):
        load_yaml_mapping(path)
    with pytest.raises(ConfigError, match=r"grid file .*nope\.yaml does not exist"):
        load_yaml_mapping(tmp_path / "nope.yaml", what="grid")


@pytest.mark.parametrize("module", [rag.core.validation, rag.core.config])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
