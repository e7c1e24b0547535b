from __future__ import annotations

import pytest

from rag.core.config import RagConfig, load_config
from rag.core.errors import ConfigError


@pytest.mark.parametrize("name", ["dense", "bm25", "hybrid"])
def test_shipped_configs_load_and_round_trip(name):
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml")
    assert config.retrieval.mode == name
    assert RagConfig.from_dict(config.to_dict()) == config


def test_unknown_keys_and_values_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*retrival"):
        RagConfig.from_dict({"retrival": {}})
    with pytest.raises(ConfigError, match="top_kk.*allowed"):
        RagConfig.from_dict({"retrieval": {"top_kk": 3}})
    with pytest.raises(ConfigError, match="mode 'sparse' is not one of dense, bm25, hybrid"):
        RagConfig.from_dict({"retrieval": {"mode": "sparse"}})
    with pytest.raises(ConfigError, match="top_k must be positive"):
        RagConfig.from_dict({"retrieval": {"top_k": 0}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
