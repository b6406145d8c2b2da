"""`freezetune serve` as a process: instant --help, YAML config, refusals before listening, SIGTERM."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from live import free_port

from freezetune.cli.main import parse_args
from freezetune.io.checkpoint import META_FILE
from freezetune.serve.generation import Decoding

HEAVY = ("torch", "transformers", "fastapi", "uvicorn", "pydantic")


def freezetune(*argv, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "freezetune", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, **kwargs)


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom freezetune.cli.main import main\ntry:\n    main(['serve', '--help'])\n"
            "except SystemExit as exit:\n    assert exit.code == 0\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_yaml_config_keys_are_the_flag_names(tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text("checkpoint:\n  sentiment: runs/a\n  topic: runs/b\nport: 9001\nmax-batch: 16\n")
    args = parse_args(["serve", "--config", str(config)])
    assert args.checkpoint == ["sentiment=runs/a", "topic=runs/b"] and args.port == 9001 and args.max_batch == 16
    args = parse_args(["serve", "--config", str(config), "--port", "9002"])
    assert args.port == 9002  # flags override the file


def one_line_refusal(process):
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_a_checkpoint_of_another_base_is_refused_in_one_line_before_listening(checkpoints, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    bad = tmp_path / "bad"
    shutil.copytree(checkpoints["k1"], bad)
    meta = json.loads((bad / META_FILE).read_text())
    meta["base_fingerprint"] = "0" * 16
    (bad / META_FILE).write_text(json.dumps(meta))
    err = one_line_refusal(freezetune("serve", "--checkpoint", f"ok={checkpoints['k2']}", "--checkpoint",
                                      f"bad={bad}", "--port", str(free_port())))
    assert "checkpoint bad" in err and "different base model" in err
    err = one_line_refusal(freezetune("serve", "--checkpoint", f"x={tmp_path / 'nowhere'}"))
    assert "no such checkpoint" in err


def longest_prompt(task) -> str:
    """A prompt whose greedy continuation runs long (no end token soon), so a request stays in flight."""
    candidates = ["good", "the plot was dull", "review the film was very great . sentiment ?", "a movie story is"]
    lengths = {}
    for prompt in candidates:
        (choice,) = Decoding(task, task.prompt_format.prompts([prompt]), max_tokens=200, stop=[]).run()
        lengths[prompt] = len(choice.tokens)
    return max(lengths, key=lengths.get)


def test_sigterm_finishes_the_request_in_flight_then_exits(lm_checkpoints, decoder_base):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    prompt = longest_prompt(decoder_base.tasks["chat"])
    port = free_port()
    process = freezetune("--log-level", "debug", "serve", "--checkpoint", f"chat={lm_checkpoints['chat']}",
                         "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        lines = []
        body = {"model": "chat", "prompt": prompt, "max_tokens": 200, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and not lines:
                    process.send_signal(signal.SIGTERM)  # while the request is in flight
                if line.startswith("data: "):
                    lines.append(line[6:])
        assert lines[-1] == "[DONE]"  # the stream was finished, not cut
        assert json.loads(lines[-2])["choices"][0]["finish_reason"] in ("stop", "length")
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped on SIGTERM" in err
    assert "POST /v1/completions 200" in err  # the debug line of the request
