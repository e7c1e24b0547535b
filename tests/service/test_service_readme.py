"""The README's `rag serve` + curl session, run as written (on a free port instead of 8000)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def serving_session() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Serving over HTTP", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_serving_session_runs(tmp_path):
    # Nothing the server prints (uvicorn logs to stdout and stderr) may hold the key the script made.
    # A failing line ends the script (bash -e); the trap stops the server it started in the background.
    script = "trap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + serving_session().replace("8000", str(free_port()))
    script += 'echo "key=$RAG_API_KEY"\n'
    (tmp_path / "rag").mkdir()
    (tmp_path / "rag" / "demo").symlink_to(ROOT / "rag" / "demo")  # the corpus path, as in the repository
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # uvicorn's access log shares stdout with curl: keep curl's JSON lines and the metric lines.
    lines = [line for line in done.stdout.splitlines() if line.startswith(("{", "rag_"))]
    ready, query, added, deleted = (json.loads(line) for line in lines[:4])
    assert ready == {"ready": True, "indexes": {"demo": "ready"}}
    assert query["documents"][0]["meta"]["title"] == "The Waggle Dance", query
    assert (added["generation"], added["documents"]) == (1, 1)
    assert (deleted["generation"], deleted["documents"]) == (2, 1)
    counts = [line for line in lines[4:] if line.startswith("rag_http_requests_total")]
    assert any('route="/query"' in line and 'status="200"' in line for line in counts), lines
    key = done.stdout.strip().splitlines()[-1].removeprefix("key=")
    assert len(key) > 20 and key not in done.stderr and key not in done.stdout.replace(f"key={key}", "")
