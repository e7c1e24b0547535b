from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.core.chunking import make_chunker
from rag.core.config import (
    BM25_DEFAULTS,
    RETRIEVAL_MODES,
    BM25Config,
    EncoderConfig,
    IndexConfig,
    RagConfig,
    RetrievalConfig,
    check_chunking_config,
    load_config,
)
from rag.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEMO_CORPUS = ROOT / "rag" / "demo" / "corpus.jsonl"


@pytest.mark.parametrize("name", ["dense", "bm25", "hybrid"])
def test_shipped_configs_load_and_round_trip(name):
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    assert config.retrieval.mode == name
    assert RagConfig.from_dict(config.to_dict()) == config


def test_a_config_with_every_section_round_trips():
    config = RagConfig.from_dict(
        {
            "name": "everything",
            "chunking": {"method": "recursive", "size": 200, "overlap": 20, "separators": ["\n\n", " ", ""]},
            "encoder": {
                "model": "m",
                "batch_size": 8,
                "max_length": 128,
                "normalize": False,
                "device": "cuda:1",
            },
            "index": {"type": "ivfpq", "params": {"nlist": None, "nbits": 4}},
            "bm25": {"k1": 1, "b": 0.5, "stopwords": ["a", "the"], "stemmer": None, "delta": 0.5},
            "retrieval": {"mode": "hybrid", "top_k": 3, "candidates": 7},
        }
    )
    assert RagConfig.from_dict(config.to_dict()) == config
    assert RagConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.bm25["k1"] == 1.0 and isinstance(config.bm25["k1"], float)  # an int is a fine float


def test_unknown_keys_are_named_with_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*'retrival' \\(did you mean 'retrieval'\\?\\)"):
        RagConfig.from_dict({"retrival": {}})
    with pytest.raises(
        ConfigError, match="retrieval: unknown key.*'top_kk'.*allowed: candidates, mode, top_k"
    ):
        RagConfig.from_dict({"retrieval": {"top_kk": 3}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


# Each: a config as YAML text, and what the one-line error must say (key, value, and the fix).
BAD_CONFIGS = [
    (
        'retrieval: {top_k: "ten"}',
        r"retrieval\.top_k must be a positive integer, got 'ten' \(str\); write e\.g\. top_k: 10",
    ),
    ("retrieval: {top_k: 2.5}", r"retrieval\.top_k must be a positive integer, got 2\.5 \(float\)"),
    ("retrieval: {top_k: true}", r"retrieval\.top_k must be a positive integer, got true \(bool\)"),
    ("retrieval: {top_k: 0}", r"retrieval\.top_k must be a positive integer, got 0; write e\.g\. top_k: 10"),
    ("retrieval: {top_k: -1}", r"retrieval\.top_k must be a positive integer, got -1"),
    ("retrieval: {candidates: 0}", r"retrieval\.candidates must be a positive integer, got 0"),
    ("retrieval: {mode: sparse}", rf"retrieval\.mode must be one of {', '.join(RETRIEVAL_MODES)}, got 'sp"),
    ("retrieval: 5", r"retrieval must be a mapping, got 5 \(int\); write e\.g\. retrieval: \{mode: dense"),
    ("[1, 2]", r"top level must be a mapping.*got \[1, 2\] \(list\)"),
    ("just words", r"top level must be a mapping.*got 'just words' \(str\)"),
    ("name: 5", r"name must be a string, got 5 \(int\)"),
    ('encoder: {batch_size: "32"}', r"encoder\.batch_size must be a positive integer, got '32' \(str\)"),
    ("encoder: {batch_size: 0}", r"encoder\.batch_size must be a positive integer, got 0"),
    ('encoder: {normalize: "no"}', r"encoder\.normalize must be true or false, got 'no' \(str\)"),
    ("encoder: {normalize: 1}", r"encoder\.normalize must be true or false, got 1 \(int\)"),
    ("encoder: {max_length: 0}", r"encoder\.max_length must be a positive integer or null, got 0"),
    ("encoder: {model: [a]}", r"encoder\.model must be a string, got \['a'\] \(list\)"),
    (
        "encoder: {device: gpu}",
        r"encoder\.device must be cpu, cuda, cuda:N \(e\.g\. cuda:0\) or mps, got 'gpu'",
    ),
    ('encoder: {device: "cuda:x"}', r"encoder\.device must be cpu, cuda"),
    ("encoder: 32", r"encoder must be a mapping, got 32 \(int\)"),
    (
        "index: {type: bm25}",
        r"index\.type must be one of flat, hnsw, ivfpq, got 'bm25' \(BM25 is chosen with",
    ),
    ('index: {params: "M=32"}', r"index\.params must be a mapping, got 'M=32' \(str\)"),
    ("index: {type: hnsw, params: {M: 32}}", r"unknown hnsw index parameter\(s\) 'M' \(did you mean 'm'\?\)"),
    ("index: {type: hnsw, params: {m: 1}}", r"hnsw parameter 'm' \(links per node\) must be at least 2"),
    ("index: {type: hnsw, params: {ef_search: 2.5}}", r"hnsw index parameter 'ef_search' must be a positive"),
    ("index: {type: flat, params: {m: 32}}", r"unknown flat index parameter\(s\) 'm'; allowed: none"),
    ("index: {type: ivfpq, params: {nbits: 20}}", r"ivfpq parameter 'nbits' must be at most 16, got 20"),
    (
        "index: {type: ivfpq, params: {nbits: null}}",
        r"ivfpq index parameter 'nbits' must be a positive integer",
    ),
    (
        "bm25: [1.2, 0.75]",
        r"bm25 must be a mapping, got \[1\.2, 0\.75\] \(list\); write e\.g\. bm25: \{k1: 1\.2",
    ),
    ('bm25: {k1: "1.2"}', r"bm25\.k1 must be a non-negative number, got '1\.2' \(str\)"),
    ("bm25: {k1: -1}", r"bm25\.k1 must be a non-negative number, got -1"),
    ("bm25: {b: 2}", r"bm25\.b must be a number from 0 to 1, got 2"),
    (
        "bm25: {method: tfidf}",
        r"bm25\.method must be one of robertson, lucene, atire, bm25l, bm25\+, got 'tfidf'",
    ),
    (
        "bm25: {stemmer: englsh}",
        r"bm25\.stemmer must be null or one of .*got 'englsh' \(did you mean 'english'\?\)",
    ),
    ("bm25: {stopwords: klingon}", r"bm25\.stopwords 'klingon' is not a language bm25s knows"),
    ("bm25: {stopwords: [a, 1]}", r"bm25\.stopwords must be a string, a list of strings or null"),
    ("bm25: {k2: 1}", r"bm25: unknown key\(s\) 'k2'"),
    (
        "chunking: 5",
        r"chunking must be a mapping, got 5 \(int\); write e\.g\. chunking: \{method: fixed, size: 256\}",
    ),
    ("chunking: {method: sliding}", r"unknown chunking method 'sliding'"),
    (
        'chunking: {method: fixed, size: "256"}',
        r"chunking\.size must be a positive integer, got '256' \(str\)",
    ),
    ("chunking: {method: fixed}", r"chunking method 'fixed' needs 'size'"),
    (
        "chunking: {method: fixed, size: 10, overlap: 10}",
        r"chunk overlap \(10\) must be smaller than size \(10\)",
    ),
    ("chunking: {method: fixed, size: 10, overlap: -1}", r"chunking\.overlap must be a non-negative integer"),
    ("chunking: {method: none, size: 10}", r"unknown chunking key\(s\) \['size'\] for method 'none'"),
    (
        "chunking: {method: recursive, size: 10, separators: []}",
        r"separators must be a non-empty list of strings",
    ),
    (
        "chunking: {method: fixed, size: 10, unit: lines}",
        r"chunking unit must be one of \['tokens', 'chars'\]",
    ),
    (
        "chunking: {method: semantic, size: 10, piece_size: 20}",
        r"piece_size \(20\) must not exceed size \(10\)",
    ),
]


@pytest.mark.parametrize(("text", "pattern"), BAD_CONFIGS, ids=[t for t, _ in BAD_CONFIGS])
def test_wrong_values_fail_at_load_with_one_line(tmp_path, text, pattern):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=pattern) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_from_dict_refuses_what_load_config_refuses():
    with pytest.raises(ConfigError, match=r"^config: retrieval\.top_k must be a positive integer, got true"):
        RagConfig.from_dict({"retrieval": {"top_k": True}})
    with pytest.raises(
        ConfigError, match=r"^my.yaml: the top level must be a mapping.*got \[1, 2\] \(list\)"
    ):
        RagConfig.from_dict([1, 2], source="my.yaml")  # type: ignore[arg-type]


def test_valid_edge_values_are_kept():
    config = RagConfig.from_dict(
        {"encoder": {"max_length": None, "device": "mps"}, "retrieval": None, "bm25": None, "chunking": None}
    )
    assert config.encoder.max_length is None and config.encoder.device == "mps"
    assert (
        config.retrieval == RetrievalConfig() and config.bm25 == {} and config.chunking == {"method": "none"}
    )
    assert RagConfig.from_dict({"encoder": {"device": "cuda"}}).encoder.device == "cuda"
    assert EncoderConfig().device == "cpu"
    assert RagConfig.from_dict({"index": {"type": "ivfpq", "params": {"nlist": None}}}).index.params == {
        "nlist": None
    }


def test_sections_built_in_python_are_checked_too():
    with pytest.raises(ConfigError, match=r"RetrievalConfig: top_k must be a positive integer, got 2\.5"):
        RetrievalConfig(top_k=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"EncoderConfig: normalize must be true or false, got 'no'"):
        EncoderConfig(normalize="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"IndexConfig: index\.params|unknown hnsw index parameter"):
        IndexConfig(type="hnsw", params={"efsearch": 3})
    with pytest.raises(ConfigError, match=r"RagConfig: encoder must be a EncoderConfig, got \{"):
        RagConfig(encoder={"model": "x"})  # type: ignore[arg-type]
    config = RagConfig(name="dense")
    with pytest.raises(ConfigError, match="top_k"):
        dataclasses.replace(config, retrieval=dataclasses.replace(config.retrieval, top_k=0))


def test_chunking_is_checked_by_the_same_function_as_make_chunker():
    bad = {"method": "fixed", "size": 10, "overlap": 10}
    with pytest.raises(ConfigError, match=r"overlap \(10\) must be smaller") as from_config:
        RagConfig.from_dict({"chunking": bad})
    with pytest.raises(ConfigError, match=r"overlap \(10\) must be smaller") as from_chunker:
        make_chunker(bad)
    assert str(from_config.value).split(": ", 1)[1] == str(from_chunker.value).split(": ", 1)[1]
    # Checking builds nothing: an unknown tokenizer or model name is only found when the chunker runs.
    assert check_chunking_config({"method": "semantic", "size": 100, "model": "not-a-model"}) == {
        "method": "semantic",
        "size": 100,
        "model": "not-a-model",
    }


def test_bm25_has_one_default_shared_by_config_and_index():
    from indexers.bm25 import DEFAULT_PARAMS, resolve_params

    # 1.2 / 0.75 is the setting that matched Pyserini on SciFact; the shipped configs say the same.
    assert BM25Config().k1 == 1.2 and BM25Config().b == 0.75
    assert resolve_params(None) == DEFAULT_PARAMS == BM25_DEFAULTS
    for name in ("bm25", "hybrid"):
        assert load_config(ROOT / "configs" / f"{name}.yaml").bm25 == BM25_DEFAULTS
    assert resolve_params({"k1": 2, "delta": None}) == {**BM25_DEFAULTS, "k1": 2.0}
    assert resolve_params({"method": "bm25+", "delta": 1})["delta"] == 1.0
    with pytest.raises(ConfigError, match=r"bm25 index params: b must be a number from 0 to 1, got 1\.5"):
        resolve_params({"b": 1.5})


def test_loading_a_config_imports_no_faiss_torch_haystack_or_tokenizer(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "chunking: {method: recursive, size: 100, tokenizer: cl100k_base}\n"
        "index: {type: hnsw, params: {m: 16}}\n"
        "bm25: {k1: 1.2, stemmer: english}\n"
        "retrieval: {mode: hybrid}\n",
        encoding="utf-8",
    )
    probe = (
        "import sys\n"
        "from rag.core.config import load_config\n"
        f"load_config({str(path)!r})\n"
        "heavy = ['faiss', 'torch', 'haystack', 'tiktoken', 'transformers', 'sentence_transformers']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize(
    "text",
    [
        'retrieval: {top_k: "ten"}',
        'encoder: {batch_size: "32"}',
        "bm25: [1.2, 0.75]",
        'index: {params: "M=32"}',
    ],
)
def test_cli_prints_one_line_and_exits_2(tmp_path, text):
    from rag.cli import app

    config = tmp_path / "bad.yaml"
    config.write_text(text + "\n", encoding="utf-8")
    out = tmp_path / "x"
    result = CliRunner().invoke(
        app,
        ["index", "--config", str(config), "--corpus", str(DEMO_CORPUS), "--out", str(out), "--no-progress"],
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.yaml" in lines[0], result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, ConfigError)
    assert not out.exists()
