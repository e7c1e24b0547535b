"""`rag serve` refuses bad arguments before loading anything; keys are checked and never echoed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rag.cli import app
from rag.core.errors import ConfigError
from rag.service.auth import key_matches, load_api_keys, presented_key
from rag.service.settings import ServiceSettings, parse_index_arg

runner = CliRunner()


def test_serve_refuses_bad_arguments(tmp_path, bm25_bundle, monkeypatch):
    monkeypatch.delenv("RAG_API_KEY", raising=False)
    missing = runner.invoke(app, ["serve", "--index", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere" in missing.output
    twice = runner.invoke(app, ["serve", "--index", f"a={bm25_bundle}", "--index", f"a={bm25_bundle}"])
    assert twice.exit_code == 2 and "two indexes are named 'a'" in twice.output
    traversal = runner.invoke(app, ["serve", "--index", f"../x={bm25_bundle}"])
    assert traversal.exit_code == 2 and "index name" in traversal.output
    reads = runner.invoke(app, ["serve", "--index", str(bm25_bundle), "--require-key-for-reads"])
    assert reads.exit_code == 2 and "needs an API key" in reads.output
    short = tmp_path / "keys"
    short.write_text("# ops team\nsecret1\n")
    weak = runner.invoke(app, ["serve", "--index", str(bm25_bundle), "--api-key-file", str(short)])
    assert weak.exit_code == 2 and "at least 16" in weak.output and "secret1" not in weak.output


def test_keys_from_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "  k" * 8 + "  ")
    with pytest.raises(ConfigError, match=r"\$MY_KEY") as error:
        load_api_keys("MY_KEY")
    assert "k k" not in str(error.value)
    monkeypatch.setenv("MY_KEY", "a" * 20)
    keys_file = tmp_path / "keys"
    keys_file.write_text("# comment\n" + "b" * 20 + "\n\n" + "a" * 20 + "\n")
    assert load_api_keys("MY_KEY", keys_file) == ("a" * 20, "b" * 20)
    assert load_api_keys("UNSET_VARIABLE_X") == ()
    empty = tmp_path / "empty-keys"
    empty.write_text("# none yet\n")
    with pytest.raises(ConfigError, match="holds no key"):
        load_api_keys(None, empty)


def test_presented_key_and_constant_time_match():
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key("bearer  abc ", None) == "abc"
    assert presented_key("Basic abc", None) is None
    assert presented_key(None, "xyz") == "xyz" and presented_key("Bearer abc", "xyz") == "xyz"
    keys = ("a" * 20, "b" * 20)
    assert key_matches("b" * 20, keys) and not key_matches("b" * 19, keys) and not key_matches("", keys)
    assert not key_matches("\udc80ключ", keys)  # never raises on odd input


def test_index_names_are_names(tmp_path):
    assert parse_index_arg("docs=idx") == ("docs", tmp_path.__class__("idx"))
    for bad in ["../x=idx", ".=idx", "a/b=idx", "=idx", "x" * 65 + "=idx"]:
        with pytest.raises(ConfigError):
            parse_index_arg(bad)
    with pytest.raises(ConfigError, match="names no folder"):
        parse_index_arg("docs=")
    with pytest.raises(ConfigError, match="at least one index"):
        ServiceSettings(indexes={})
    with pytest.raises(ConfigError, match="timeout"):
        ServiceSettings(indexes={"a": tmp_path}, timeout=0)
