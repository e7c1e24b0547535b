"""The endpoints through a real HTTP client against a uvicorn server started here."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import API_KEY, serve_in_thread

from rag.service.settings import ServiceSettings

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture()
def server(bm25_bundle):
    with serve_in_thread(
        ServiceSettings(indexes={"docs": bm25_bundle}, api_keys=(API_KEY,), max_top_k=5)
    ) as base:
        yield base


def test_query_returns_ranked_documents_with_meta(server):
    response = httpx.post(f"{server}/query", json={"query": "yeast makes bread dough rise", "top_k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["index"] == "docs" and body["generation"] == 0
    assert body["documents"][0]["id"] == "a"
    assert body["documents"][0]["meta"]["title"] == "A" and body["documents"][0]["meta"]["year"] == 2020
    assert body["documents"][0]["score"] > 0
    assert body["answer"] is None and body["replies"] is None
    assert set(body["stage_ms"]) == {"bm25_retriever"}


def test_metadata_filter_and_unknown_index(server):
    ok = httpx.post(
        f"{server}/query",
        json={
            "query": "the moon and the bees",
            "filters": {"field": "meta.year", "operator": ">=", "value": 2022},
        },
    )
    assert ok.status_code == 200, ok.text
    assert [d["id"] for d in ok.json()["documents"]] == ["c"]
    bad_filter = httpx.post(f"{server}/query", json={"query": "moon", "filters": {"nonsense": 1}})
    assert bad_filter.status_code == 400 and "Haystack metadata filter" in bad_filter.json()["detail"]
    unknown = httpx.post(f"{server}/query", json={"query": "moon", "index": "other"})
    assert unknown.status_code == 404 and "serves: docs" in unknown.json()["detail"]
    traversal = httpx.post(f"{server}/query", json={"query": "moon", "index": "../../etc"})
    assert traversal.status_code == 422


def test_overrides_only_reach_free_inputs(server):
    bad = httpx.post(
        f"{server}/query", json={"query": "moon", "overrides": {"bm25_retriever": {"query": "x"}}}
    )
    assert bad.status_code == 400 and "allowed:" in bad.json()["detail"]
    other = httpx.post(f"{server}/query", json={"query": "moon", "overrides": {"nope": {"x": 1}}})
    assert other.status_code == 400


def test_limits(server):
    too_many = httpx.post(f"{server}/query", json={"query": "moon", "top_k": 6})
    assert too_many.status_code == 422
    zero = httpx.post(f"{server}/query", json={"query": "moon", "top_k": 0})
    assert zero.status_code == 422
    unknown_field = httpx.post(f"{server}/query", json={"query": "moon", "topk": 3})
    assert unknown_field.status_code == 422
    blank = httpx.post(f"{server}/query", json={"query": "   "})
    assert blank.status_code == 422
    malformed = httpx.post(
        f"{server}/query", content=b'{"query": ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422
    long_query = httpx.post(f"{server}/query", json={"query": " ".join(["tide"] * 10_000)})
    assert long_query.status_code == 200


def test_body_size_limit(bm25_bundle):
    settings = ServiceSettings(indexes={"docs": bm25_bundle}, api_keys=(API_KEY,), max_body_bytes=2000)
    with serve_in_thread(settings) as base:
        small = httpx.post(f"{base}/query", json={"query": "moon"})
        assert small.status_code == 200
        big = httpx.post(f"{base}/query", json={"query": "moon " * 1000})
        assert big.status_code == 413

        def chunks():  # no Content-Length: the limit counts the bytes as they arrive
            yield b'{"query": "'
            for _ in range(100):
                yield b"moon " * 10
            yield b'"}'

        streamed = httpx.post(f"{base}/query", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def test_auth_off_for_reads_but_writes_need_a_key(server):
    assert httpx.post(f"{server}/query", json={"query": "moon"}).status_code == 200
    doc = {"documents": [{"id": "e", "text": "Volcanoes erupt when magma rises."}]}
    missing = httpx.post(f"{server}/documents", json=doc)
    assert missing.status_code == 401 and missing.json() == {
        "error": "Unauthorized",
        "detail": "an API key is required",
    }
    wrong = httpx.post(f"{server}/documents", json=doc, headers={"X-API-Key": API_KEY[:-1] + "X"})
    assert wrong.status_code == 403 and wrong.json() == {"error": "Forbidden", "detail": "not allowed"}
    assert API_KEY[:-1] not in wrong.text
    unicode_key = httpx.post(f"{server}/documents", json=doc, headers={"X-API-Key": "ключ".encode()})
    assert unicode_key.status_code == 403
    assert httpx.delete(f"{server}/documents/a").status_code == 401
    added = httpx.post(f"{server}/documents", json=doc, headers=AUTH)
    assert added.status_code == 201, added.text
    assert added.json()["generation"] == 1 and added.json()["documents"] == 1
    found = httpx.post(f"{server}/query", json={"query": "magma volcanoes"}).json()["documents"]
    assert found[0]["id"] == "e"


def test_auth_on_for_reads(bm25_bundle):
    settings = ServiceSettings(indexes={"docs": bm25_bundle}, api_keys=(API_KEY,), require_key_for_reads=True)
    with serve_in_thread(settings) as base:
        assert httpx.post(f"{base}/query", json={"query": "moon"}).status_code == 401
        assert httpx.get(f"{base}/indexes").status_code == 401
        assert httpx.get(f"{base}/metrics").status_code == 401
        assert (
            httpx.post(f"{base}/query", json={"query": "moon"}, headers={"X-API-Key": "x" * 20}).status_code
            == 403
        )
        assert httpx.post(f"{base}/query", json={"query": "moon"}, headers=AUTH).status_code == 200
        assert httpx.get(f"{base}/indexes", headers={"X-API-Key": API_KEY}).status_code == 200
        # Liveness and readiness stay open, for the orchestrator's probes.
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/ready").status_code == 200


def test_no_keys_means_no_writes(bm25_bundle):
    with serve_in_thread(ServiceSettings(indexes={"docs": bm25_bundle})) as base:
        doc = {"documents": [{"id": "e", "text": "x"}]}
        assert httpx.post(f"{base}/documents", json=doc, headers=AUTH).status_code == 403
        assert httpx.post(f"{base}/documents", json=doc).status_code == 403


def test_add_and_delete_errors_map_to_status(server):
    clash = httpx.post(
        f"{server}/documents", json={"documents": [{"id": "a", "text": "again"}]}, headers=AUTH
    )
    assert clash.status_code == 400 and "already in index 'docs'" in clash.json()["detail"]
    assert str(server) not in clash.text and "/tmp" not in clash.json()["detail"]
    reserved = httpx.post(
        f"{server}/documents",
        json={"documents": [{"id": "z", "text": "t", "meta": {"start": 3}}]},
        headers=AUTH,
    )
    assert reserved.status_code == 422 and "rag-serve-" not in reserved.text, reserved.text
    extra = httpx.post(
        f"{server}/documents", json={"documents": [{"id": "z", "text": "t", "x": 1}]}, headers=AUTH
    )
    assert extra.status_code == 422
    gone = httpx.delete(f"{server}/documents/nope", headers=AUTH)
    assert gone.status_code == 404
    deleted = httpx.delete(f"{server}/documents/b", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["documents"] == 1, deleted.text
    ids = [
        d["id"]
        for d in httpx.post(f"{server}/query", json={"query": "moon tides oceans"}).json()["documents"]
    ]
    assert "b" not in ids


def test_indexes_health_ready_openapi(server):
    (info,) = httpx.get(f"{server}/indexes").json()
    assert info["name"] == "docs" and info["documents"] == 4 and info["retrieval"] == "bm25"
    assert info["sides"] == ["bm25"] and "/" not in str(info)
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server}/ready").json() == {"ready": True, "indexes": {"docs": "ready"}}
    schema = httpx.get(f"{server}/openapi.json").json()
    assert {
        "/query",
        "/documents",
        "/documents/{doc_id}",
        "/indexes",
        "/health",
        "/ready",
        "/metrics",
    } <= set(schema["paths"])
    top_k = schema["components"]["schemas"]["QueryRequest"]["properties"]["top_k"]
    assert any(option.get("maximum") == 5 for option in top_k["anyOf"])
    assert httpx.get(f"{server}/docs").status_code == 404


def test_streaming_answer_as_server_sent_events(server):
    with httpx.stream("POST", f"{server}/query", json={"query": "moon tides", "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [block.split("\n")[0] for block in text.strip().split("\n\n")]
    assert events == ["event: documents", "event: done"]
    assert '"id": "b"' in text


def test_metrics(server):
    httpx.post(f"{server}/query", json={"query": "moon"})
    httpx.post(f"{server}/query", json={"query": "moon", "top_k": 99})
    httpx.get(f"{server}/nowhere")
    text = httpx.get(f"{server}/metrics").text
    assert 'rag_http_requests_total{method="POST",route="/query",status="200"} 1.0' in text
    assert 'rag_http_requests_total{method="POST",route="/query",status="422"} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert 'rag_http_request_duration_seconds_count{method="POST",route="/query"} 2.0' in text
    assert 'rag_index_generation{index="docs"} 0.0' in text


def test_lone_surrogates_never_crash(server):
    """Half a surrogate pair ("\\ud800") cannot be encoded as UTF-8. In a query pydantic refuses it, and
    the 422 must not echo it back; in a posted document the corpus reader's rule applies (U+FFFD and a
    warning)."""
    json_type = {"content-type": "application/json"}
    query = httpx.post(f"{server}/query", content=b'{"query": "moon \\ud800 tides"}', headers=json_type)
    assert query.status_code == 422 and query.json()["detail"][0]["loc"] == ["body", "query"], query.text
    paired = httpx.post(f"{server}/query", content=b'{"query": "moon \\ud83d\\ude00"}', headers=json_type)
    assert paired.status_code == 200  # a whole pair is one code point
    added = httpx.post(
        f"{server}/documents",
        content=b'{"documents": [{"id": "s", "text": "lava \\ud800 flows", "meta": {"k\\ud801": 1}}]}',
        headers={**AUTH, **json_type},
    )
    assert added.status_code == 201, added.text
    assert "U+FFFD" in added.json()["warnings"][0] and "/tmp" not in added.text
    (doc,) = httpx.post(f"{server}/query", json={"query": "lava flows"}).json()["documents"]
    assert doc["content"] == "lava \ufffd flows" and doc["meta"]["k\ufffd"] == 1


def test_a_damaged_bundle_is_named_not_served_and_not_reloaded_each_time(server, bm25_bundle, monkeypatch):
    import rag.service.state as state_module

    reads = []
    real = state_module.read_bundle_manifest
    monkeypatch.setattr(state_module, "read_bundle_manifest", lambda path: reads.append(path) or real(path))
    manifest = bm25_bundle / "bundle.json"
    data = json.loads(manifest.read_text())
    data["checksums"]["config.yaml"] = "0" * 64
    manifest.write_text(json.dumps(data))
    first = httpx.post(f"{server}/query", json={"query": "moon"})
    assert first.status_code == 500 and first.json()["error"] == "IndexCorruptError", first.text
    assert "index 'docs'" in first.json()["detail"] and str(bm25_bundle) not in first.text
    again = httpx.post(f"{server}/query", json={"query": "moon"})
    assert again.json() == first.json() and len(reads) == 1  # the same bundle state is not re-read
