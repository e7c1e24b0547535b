"""The bm25 stop-word language is checked at config load, and the default costs no bm25s import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rag.core.config import BM25Config, RagConfig
from rag.core.errors import ConfigError

LOAD = """
import json, sys
from rag.core.config import load_config
load_config({path!r})
print(json.dumps([m for m in ("bm25s", "scipy") if m in sys.modules]))
"""


def test_bm25s_knows_the_default_language() -> None:
    # The load-time check trusts the declared default without asking bm25s; this is why it may.
    import bm25s

    tokens = bm25s.tokenize(["the cat and the hat"], stopwords=BM25Config.stopwords, return_ids=False)
    assert tokens == [["cat", "hat"]]


def test_other_languages_are_asked_of_bm25s() -> None:
    RagConfig.from_dict({"bm25": {"stopwords": "de"}})  # known to bm25s: accepted
    with pytest.raises(ConfigError, match="bm25.stopwords 'klingon' is not a language bm25s knows"):
        RagConfig.from_dict({"bm25": {"stopwords": "klingon"}}, source="c.yaml")


@pytest.mark.parametrize(("stopwords", "imported"), [("en", []), ("de", ["bm25s", "scipy"])])
def test_loading_a_config_imports_bm25s_only_for_another_language(
    tmp_path: Path, stopwords: str, imported: list[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"retrieval: {{mode: bm25}}\nbm25: {{stopwords: {stopwords}, stemmer: english}}\n")
    code = LOAD.format(path=str(config))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == imported
