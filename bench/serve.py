"""Serving many checkpoints on one base: memory, the shared trunk's fan-out, throughput and latency.

    .venv/bin/python bench/serve.py [--workdir DIR] [--requests 200] [--seconds 60]

Checkpoints: 8 ``top_k:2`` tasks on all-MiniLM-L6-v2 (the embedded default), written by the
library's own ``save_checkpoint`` from the base with its trained tensors (blocks 4-5 and a 3-class
head) moved by seeded noise: the format and sizes of trained checkpoints, without the training.
Every arm runs in its own process (bench/serve_arms.py). Measured:

* resident memory of the server's loading with 1, 4 and 8 checkpoints, against 8 separate models in
  one process; target: RSS(8) <= RSS(1) + the other 7 checkpoints' trained tensors + 100 MiB;
* the trunk without HTTP: one fan-out call for 8 tasks against 8 single-task calls one after another
  (and against 8 separate models); the block-count limit is (L*N) / (d + N*(L - d)) = 2.4 for L=6, d=4,
  N=8; target: >= 0.85 of it;
* over HTTP on 127.0.0.1, bounded in requests and time: (a) 8 tasks behind ``freezetune serve`` against
  8 separate models behind a plain FastAPI route in one process, 8 concurrent clients of single-task
  requests; (b) one request fanned out to 8 tasks against the same rows as 8 single-task requests
  one after another. Throughput and p50 / p99 latency.

Results: bench/results/serve.md and serve.json, with the machine and its load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PYTHON = sys.executable
TASKS = 8
L, D = 6, 4  # MiniLM's blocks; top_k:2 freezes blocks 0..3


def write_checkpoints(root: Path, n: int) -> list[Path]:
    import torch

    from freezetune.core.layout import LayerMap
    from freezetune.core.model import load_classifier
    from freezetune.io.checkpoint import base_fingerprint, save_checkpoint
    from freezetune.io.defaults import default_model_path
    from freezetune.strategies.registry import resolve

    base = default_model_path()
    out = []
    for i in range(n):
        folder = root / f"t{i}"
        out.append(folder)
        if (folder / "checkpoint.json").is_file():
            continue
        torch.manual_seed(i)
        model = load_classifier(base, 3, pooling="mean")
        fingerprint = base_fingerprint(model.backbone)
        layers = LayerMap.from_model(model)
        plan = resolve("top_k:2", layers)
        plan.apply(model, layers)
        with torch.no_grad():
            for param in model.parameters():
                if param.requires_grad:
                    param.add_(torch.randn_like(param) * 0.01)
        save_checkpoint(folder, model.eval(), plan, base_path=base, gguf_file=None, base_fingerprint=fingerprint,
                        label_names=["negative", "neutral", "positive"],
                        config={"strategy": "top_k:2", "text_column": "text", "max_length": 128})
    return out


def arm(name: str, root: Path) -> dict:
    result = subprocess.run([PYTHON, str(HERE / "serve_arms.py"), name, str(root)], capture_output=True, text=True,
                            timeout=900)
    if result.returncode:
        raise RuntimeError(f"arm {name} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{command} did not come up")


def percentiles(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": 1000 * pick(0.5), "p99_ms": 1000 * pick(0.99), "n": len(ordered)}


def load(url: str, bodies: list, clients: int, seconds: float) -> dict:
    """Send ``bodies`` (each a list of request bodies sent in order, one logical request) from ``clients``
    threads; stop at the last body or after ``seconds``."""
    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(bodies)
    stop_at = time.monotonic() + seconds
    errors: dict[int, int] = {}  # status code -> count: a 503 is the bounded queue, anything else a fault

    def client():
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < stop_at:
                with lock:
                    if not queue:
                        return
                    steps = queue.pop()
                t0 = time.perf_counter()
                for body in steps:
                    status = http.post("/v1/classify", json=body).status_code
                    if status != 200:
                        errors[status] = errors.get(status, 0) + 1
                with lock:
                    latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    return {"requests_per_s": len(latencies) / wall, "wall_s": wall, "errors": sum(errors.values()), "error_statuses": errors,
            **percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None, help="where the checkpoints go (default: a temporary folder)")
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests per arm at most")
    parser.add_argument("--seconds", type=float, default=60, help="seconds per HTTP arm at most")
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="freezetune-serve-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    write_checkpoints(root, TASKS)
    results: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))}
    results["rss"] = {n: arm(f"rss-serve:{n}", root) for n in (1, 4, 8)}
    results["rss"]["separate:8"] = arm(f"rss-separate:{TASKS}", root)
    results["engine"] = arm("engine", root)
    if all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "httpx")):
        results["http"] = run_http(root, args.requests, args.seconds)
    else:
        results["http"] = {"not_run": "fastapi, uvicorn or httpx is not installed in this environment"}
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.time() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "serve.md").write_text(report(results))
    print(report(results))


def run_http(root: Path, requests: int, seconds: float) -> dict:
    sys.path.insert(0, str(HERE))
    from serve_arms import tweets

    texts = tweets(8 * requests, seed=2)
    names = [f"t{i}" for i in range(TASKS)]
    single = [[{"model": names[i % TASKS], "input": texts[8 * i: 8 * i + 8]}] for i in range(requests)]
    rows = tweets(32, seed=3)
    fan = [[{"model": names, "input": rows}] for _ in range(max(1, requests // 10))]
    one_by_one = [[{"model": n, "input": rows} for n in names] for _ in range(max(1, requests // 10))]
    out = {}
    port = free_port()
    command = [PYTHON, "-m", "freezetune", "--log-level", "warning", "serve", "--port", str(port)]
    command += [a for i in range(TASKS) for a in ("--checkpoint", f"t{i}={root / f't{i}'}")]
    server = start(command, port)
    try:
        url = f"http://127.0.0.1:{port}"
        out["serve_single"] = load(url, single, clients=8, seconds=seconds)
        out["serve_fan_out"] = load(url, fan, clients=1, seconds=seconds)
        out["serve_one_by_one"] = load(url, one_by_one, clients=1, seconds=seconds)
    finally:
        server.terminate()
        server.wait(60)
    port = free_port()
    baseline = start([PYTHON, str(HERE / "serve_arms.py"), "http-separate", str(root), str(port)], port)
    try:
        out["separate_single"] = load(f"http://127.0.0.1:{port}", single, clients=8, seconds=seconds)
    finally:
        baseline.terminate()
        baseline.wait(60)
    return out


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "load_before": os.getloadavg()}


def report(r: dict) -> str:
    rss = r["rss"]
    own = sum(list(rss[8]["own_mib"].values())[1:])
    target = rss[1]["rss_mib"] + own + 100
    e = r["engine"]
    limit = (L * TASKS) / (D + TASKS * (L - D))
    ratio = e["one_by_one_s"] / e["fan_out_s"]
    m = r["machine"]
    lines = [
        "# Serving 8 checkpoints on one base (bench/serve.py)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"Python {m['python']}. Load average before / after: {m['load_before'][0]:.1f} / {r['load_after'][0]:.1f} "
        "(the machine is shared: other work ran at the same time, so times are noisy). "
        f"Started {r['started']}, took {r['seconds'] / 60:.1f} min.", "",
        "Checkpoints: 8 x `top_k:2` on all-MiniLM-L6-v2 (blocks 4-5 + a 3-class head trained; written with "
        "`save_checkpoint` from perturbed tensors).", "",
        "## Memory (resident, after loading and one batch)", "",
        "| arm | RSS MiB |", "| --- | ---: |",
        *[f"| freezetune serve, {n} checkpoint{'s' * (n > 1)} | {rss[n]['rss_mib']:.0f} |" for n in (1, 4, 8)],
        f"| 8 separate models in one process | {rss['separate:8']['rss_mib']:.0f} |", "",
        f"Base: {rss[1]['base_mib']:.1f} MiB of weights; each checkpoint adds {list(rss[8]['own_mib'].values())[0]:.1f}"
        f" MiB. Target RSS(8) <= RSS(1) + 7 checkpoints' tensors ({own:.0f} MiB) + 100 MiB = {target:.0f} MiB: "
        f"measured {rss[8]['rss_mib']:.0f} MiB, {'met' if rss[8]['rss_mib'] <= target else 'missed'}.", "",
        f"## The shared trunk without HTTP ({e['rows']} tweets, max length 64, median of {e['repeats']})", "",
        "| arm | s per 8-task request |", "| --- | ---: |",
        f"| fan-out: one call, 8 tasks | {e['fan_out_s']:.3f} |",
        f"| 8 single-task calls, one after another | {e['one_by_one_s']:.3f} |",
        f"| 8 separate models, one after another | {e['separate_models_s']:.3f} |", "",
        f"Fan-out speed-up {ratio:.2f}x; block-count limit (L*N)/(d + N*(L - d)) = {limit:.2f}x; "
        f"{ratio / limit:.2f} of it (target 0.85: {'met' if ratio >= 0.85 * limit else 'missed'}).", "",
        "## Over HTTP (127.0.0.1)", "",
    ]
    http = r["http"]
    if "not_run" in http:
        lines.append(f"Not run: {http['not_run']}.")
    else:
        lines += ["| arm | requests/s | p50 ms | p99 ms | requests | errors |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        labels = {"serve_single": "(a) freezetune serve, 8 tasks, 8 clients, 8 tweets per request",
                  "separate_single": "(a) 8 separate models behind FastAPI, same load",
                  "serve_fan_out": "(b) one request fanned out to 8 tasks (32 tweets)",
                  "serve_one_by_one": "(b) the same rows as 8 single-task requests, one after another"}
        for key, label in labels.items():
            x = http[key]
            lines.append(f"| {label} | {x['requests_per_s']:.2f} | {x['p50_ms']:.0f} | {x['p99_ms']:.0f} | "
                         f"{x['n']} | {_errors(x)} |")
        b = http["serve_fan_out"]["requests_per_s"] / http["serve_one_by_one"]["requests_per_s"]
        lines += ["", f"(b) fan-out throughput {b:.2f}x the one-by-one requests ({b / limit:.2f} of the {limit:.2f}x "
                      "limit)."]
    return "\n".join(lines) + "\n"


def _errors(arm: dict) -> str:
    """``0``, or ``1 (503: 1)``: the statuses say whether the queue refused or the server failed."""
    statuses = arm.get("error_statuses") or {}
    detail = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    return f"{arm['errors']} ({detail})" if detail else str(arm["errors"])


if __name__ == "__main__":
    main()

