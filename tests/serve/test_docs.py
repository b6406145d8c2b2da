"""docs/serving.md's examples run against a real server: its Python snippets and its curl bodies."""

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from live import live_server  # noqa: E402

from freezetune.serve.loading import load_bases  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def url(checkpoints, lm_checkpoints):
    bases = load_bases([f"sentiment={checkpoints['k1']}", f"topic={checkpoints['k2']}",
                        f"support-bot={lm_checkpoints['chat']}"])
    with live_server(bases) as (address, _):
        yield address


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippets_run(url, index, capsys):
    code = blocks("python")[index]
    if "openai" in code:
        pytest.importorskip("openai")
    exec(compile(code.replace("http://127.0.0.1:8000", url), f"serving.md snippet {index}", "exec"), {})
    assert capsys.readouterr().out  # every snippet prints its answer


def test_curl_bodies_are_accepted(url):
    commands = re.findall(r"curl -s localhost:8000(\S+) -H 'content-type: application/json' \\\n\s+-d '(.*?)'",
                          "\n".join(blocks("bash")))
    assert len(commands) == 2
    for path, body in commands:
        response = httpx.post(url + path, json=json.loads(body), timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["object"] == "list"
