"""The HTTP API against a real uvicorn server on 127.0.0.1, through a real HTTP client."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from live import live_server  # noqa: E402

from freezetune.runs.predict import predict_file  # noqa: E402
from freezetune.serve.batcher import Work  # noqa: E402

TEXTS = ["a great film", "an awful and boring film", "ok"]


@pytest.fixture(scope="module")
def live(bases):
    with live_server(bases, max_wait_ms=20) as (url, server):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, server


def post(client, path, body):
    return client.post(path, json=body)


def error_of(response, status):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["message"]
    return error


def test_health_models_and_the_openapi_schema(live):
    client, _ = live
    health = client.get("/health").json()
    assert health["status"] == "ok" and len(health["bases"]) == 2
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert set(models) == {"k1", "k2", "lora", "emb", "probe", "cls", "pair", "chat", "lmlora"}
    assert models["k1"]["trained"]["blocks"] == [3] and models["k1"]["labels"] == ["neg", "neu", "pos"]
    assert models["chat"]["task"] == "causal-lm"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/completions", "/v1/chat/completions", "/v1/models", "/health"} <= set(paths)


def test_classify_equals_predict_in_vllms_shape(live, checkpoints, tmp_path):
    client, _ = live
    data = tmp_path / "rows.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(data, index=False)
    for name in ("k1", "lora", "emb"):
        expected = pd.read_csv(predict_file(checkpoints[name], data, output_path=tmp_path / f"{name}.csv"))
        body = post(client, "/v1/classify", {"model": name, "input": TEXTS}).json()
        assert body["object"] == "list" and body["model"] == name and body["id"].startswith("classify-")
        assert body["usage"]["completion_tokens"] == 0 and body["usage"]["prompt_tokens"] > 0
        for i, item in enumerate(body["data"]):
            assert item["index"] == i and item["num_classes"] == 3
            assert item["label"] == expected["prediction"][i]
            probs = [expected[f"prob_{label}"][i] for label in ("neg", "neu", "pos")]
            assert max(abs(a - b) for a, b in zip(item["probs"], probs)) < 1e-5  # float32 rounding only
    one = post(client, "/classify", {"model": "k1", "input": TEXTS[0]}).json()  # vLLM's path, a single text
    assert len(one["data"]) == 1 and one["data"][0]["label"] in ("neg", "neu", "pos")


def test_fan_out_gives_each_task_its_own_results(live):
    client, _ = live
    names = ["k1", "k2", "lora", "emb", "probe"]
    fan = post(client, "/v1/classify", {"model": names, "input": TEXTS}).json()
    assert fan["model"] == names and set(fan["data"]) == set(names)
    for name in names:
        alone = post(client, "/v1/classify", {"model": name, "input": TEXTS}).json()["data"]
        for a, b in zip(fan["data"][name], alone):
            assert a["label"] == b["label"] and max(abs(x - y) for x, y in zip(a["probs"], b["probs"])) < 1e-5


def test_pair_tasks_take_text_pairs(live):
    client, _ = live
    one = post(client, "/v1/classify", {"model": "pair", "input": ["a great film", "yes"]}).json()
    many = post(client, "/v1/classify", {"model": "pair", "input": [["a great film", "yes"], ["ok", "no"]]}).json()
    assert len(one["data"]) == 1 and len(many["data"]) == 2
    assert one["data"][0]["probs"] == pytest.approx(many["data"][0]["probs"], abs=1e-5)  # padding differs
    assert error_of(post(client, "/v1/classify", {"model": "pair", "input": "lonely"}), 400)["param"] == "input"
    assert error_of(post(client, "/v1/classify", {"model": "k1", "input": [["a", "b"]]}), 400)["param"] == "input[0]"


def test_bad_requests_get_4xx_json_naming_the_field_and_the_server_keeps_serving(live):
    client, _ = live
    bad_json = client.post("/v1/classify", content=b'{"model": "k1", "input": [', headers={
        "content-type": "application/json"})
    assert "not valid JSON" in error_of(bad_json, 400)["message"]
    assert error_of(post(client, "/v1/classify", {"model": "nope", "input": "x"}), 404)["param"] == "model"
    assert error_of(post(client, "/v1/classify", {"model": "k1", "input": "x", "temperature": 1}), 400)[
        "param"] == "temperature"
    assert error_of(post(client, "/v1/classify", {"model": "k1"}), 400)["param"] == "input"
    assert error_of(post(client, "/v1/classify", {"model": "k1", "input": 3}), 400)["param"] == "input"
    assert error_of(post(client, "/v1/classify", {"model": "chat", "input": "x"}), 400)["param"] == "model"
    assert error_of(post(client, "/v1/classify", {"model": "k1", "input": ["x"] * 65}), 400)["param"] == "input"
    assert error_of(post(client, "/v1/completions", {"model": "k1", "prompt": "x"}), 400)["param"] == "model"
    assert error_of(post(client, "/v1/completions", {"model": "chat", "prompt": "x", "max_tokens": 0}), 400)[
        "param"] == "max_tokens"
    assert error_of(post(client, "/v1/completions", {"model": "chat", "prompt": "x", "n": 2}), 400)["param"] == "n"
    huge = client.post("/v1/classify", content=b"x" * (5 * 2**20), headers={"content-type": "application/json"})
    error_of(huge, 413)
    assert client.get("/health").json()["status"] == "ok"


def test_long_inputs_are_refused_or_cut_visibly_never_silently(live):
    client, _ = live
    long_text = " ".join(["film"] * 60)  # 62 tokens; the checkpoints were trained with max_length 32
    error = error_of(post(client, "/v1/classify", {"model": "k1", "input": ["ok", long_text]}), 400)
    assert error["param"] == "input" and "input[1] has 62 tokens" in error["message"] and "truncate" in error["message"]
    cut = post(client, "/v1/classify", {"model": "k1", "input": ["ok", long_text], "truncate": True}).json()["data"]
    assert "truncated" not in cut[0] and cut[1]["truncated"] is True
    error = error_of(post(client, "/v1/completions", {"model": "chat", "prompt": " ".join(["good"] * 40)}), 400)
    assert "truncate" in error["message"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(live):
    client, server = live
    expected = {t: post(client, "/v1/classify", {"model": "k2", "input": t}).json()["data"][0] for t in TEXTS}
    before = sum(w.batches for w in server.workers.values())

    def one(i):
        text = TEXTS[i % 3]
        return text, post(client, "/v1/classify", {"model": "k2", "input": text}).json()["data"][0]

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(24)))
    for text, item in results:
        assert item["label"] == expected[text]["label"]
        assert max(abs(a - b) for a, b in zip(item["probs"], expected[text]["probs"])) < 1e-5
    assert sum(w.batches for w in server.workers.values()) - before < 24  # some shared a batch


def test_a_full_queue_answers_503_with_retry_after(bases):
    with live_server(bases, max_queue=1) as (url, server):
        worker = next(iter(server.workers.values()))  # the encoder's
        release = threading.Event()
        loop = asyncio.new_event_loop()
        try:
            worker.submit(Work(loop.create_future(), loop, run=lambda: release.wait(10)))
            while worker.queue.qsize():
                pass
            worker.submit(Work(loop.create_future(), loop, run=lambda: None))  # the queue is full now
            response = httpx.post(f"{url}/v1/classify", json={"model": "k1", "input": "x"}, timeout=10)
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert response.json()["error"]["type"] == "server_busy"
        finally:
            release.set()
            loop.close()
        assert httpx.post(f"{url}/v1/classify", json={"model": "k1", "input": "x"}, timeout=10).status_code == 200


def test_completions_and_chat_in_openais_shape(live, lm_checkpoints, tmp_path):
    client, _ = live
    prompts = ["review the film was very great . sentiment ?", "the plot was dull"]
    data = tmp_path / "prompts.csv"
    pd.DataFrame({"prompt": prompts}).to_csv(data, index=False)
    expected = pd.read_csv(predict_file(lm_checkpoints["chat"], data, output_path=tmp_path / "g.csv",
                                        max_new_tokens=8), keep_default_na=False)["generation"].tolist()
    body = post(client, "/v1/completions", {"model": "chat", "prompt": prompts, "max_tokens": 8}).json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert [c["text"].strip() for c in body["choices"]] == expected
    assert all(c["finish_reason"] in ("stop", "length") for c in body["choices"])
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    chat = post(client, "/v1/chat/completions", {"model": "chat", "max_tokens": 8,
                                                 "messages": [{"role": "user", "content": prompts[0]}]}).json()
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["choices"][0]["message"]["content"].strip() == expected[0]  # one user turn: predict's prompt


def events(response):
    out = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            out.append(line[6:])
    return out


def test_streaming_sends_server_sent_events_that_add_up(live):
    client, _ = live
    prompt = "review the film was very great . sentiment ?"
    whole = post(client, "/v1/completions", {"model": "chat", "prompt": prompt, "max_tokens": 8}).json()
    with client.stream("POST", "/v1/completions", json={"model": "chat", "prompt": prompt, "max_tokens": 8,
                                                         "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        received = events(response)
    assert received[-1] == "[DONE]"
    chunks = [json.loads(e) for e in received[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "chat", "max_tokens": 8, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": prompt}]}) as response:
        chunks = [json.loads(e) for e in events(response)[:-1]]
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["text"] and chunks[-1]["usage"]["completion_tokens"] > 0
