"""What a run costs: peak memory of a region, step and epoch times, parameter counts."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import torch

from freezetune.core.device import pick_device

DeviceLike = str | torch.device | None

# The parts of what a user waits for in a run: training (evaluations included), the frozen-prefix
# cache build and the selection's own scoring. A cached plan's training alone can be a tenth of its
# cache build, so a cost that leaves the build out ranks it wrongly.
WAITED_PARTS = ("train_time_s", "cache_build_s", "scoring_s")


def waited_s(costs: dict[str, Any]) -> float | None:
    """Training + cache build + scoring, in seconds (None without a training time).

    Runs written before ``total_time_s`` existed are read the same way, from their parts.
    """
    if costs.get("train_time_s") is None:
        return None
    return sum(costs.get(part) or 0.0 for part in WAITED_PARTS)


def _resolve_device(device: DeviceLike) -> torch.device:
    """None means "where training would run": CUDA when available, else CPU."""
    return pick_device() if device is None else torch.device(device)


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


class PeakMemory:
    """Peak memory of this process during a region: ``with PeakMemory() as pm: ...``.

    On CPU it samples the resident set size (RSS) in a daemon thread every
    ``interval_s`` and keeps the maximum. ``resource.getrusage().ru_maxrss`` would be
    cheaper, but it is the high-water mark of the whole process and never goes down, so
    it cannot measure a region that starts after something bigger already ran. Sampling
    can miss a spike shorter than the interval; RSS is also read at start and stop.

    On CUDA it resets PyTorch's peak counter at start and reads
    ``torch.cuda.max_memory_allocated()`` at the end: exact for tensors, but it excludes
    the caching allocator's reserve and the CUDA context.

    After ``stop()`` (or leaving the ``with``): ``peak_bytes``, ``baseline_bytes`` (the
    reading at start) and ``kind`` ("rss" or "cuda_max_allocated").
    """

    def __init__(self, device: DeviceLike = None, interval_s: float = 0.02) -> None:
        self.device = _resolve_device(device)
        self.kind = "cuda_max_allocated" if _is_cuda(self.device) else "rss"
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.baseline_bytes = 0
        self._process = psutil.Process()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> PeakMemory:
        """Begin measuring; returns self so ``pm = PeakMemory().start()`` works."""
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
            self.peak_bytes = self.baseline_bytes
            return self
        self.baseline_bytes = self._process.memory_info().rss
        self.peak_bytes = self.baseline_bytes
        self._stop_event.clear()
        # Daemon: a region abandoned by an exception must not keep the interpreter alive.
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop measuring and return ``peak_bytes``."""
        if self.kind == "cuda_max_allocated":
            # Pending kernels may still allocate; wait for them before reading the peak.
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            return self.peak_bytes
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sample()
        return self.peak_bytes

    @property
    def delta_bytes(self) -> int:
        """How far the peak rose above the reading at start."""
        return max(0, self.peak_bytes - self.baseline_bytes)

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        with self._lock:
            self.peak_bytes = max(self.peak_bytes, rss)

    def _sample_loop(self) -> None:
        # Event.wait doubles as the sleep, so stop() wakes the thread at once.
        while not self._stop_event.wait(self.interval_s):
            self._sample()


class StepTimer:
    """Wall time of each training step and each epoch.

    CUDA kernels run asynchronously, so on a CUDA ``device`` the clock is read only after
    ``torch.cuda.synchronize()``; otherwise a step would be timed as its launch cost.
    ``clock`` is injectable so tests can feed exact timings.
    """

    def __init__(
        self,
        device: DeviceLike = "cpu",
        warmup: int = 5,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.warmup = warmup
        self.clock = clock
        self.step_times: list[float] = []
        self.epoch_times: list[float] = []
        self._step_start: float | None = None
        self._epoch_start: float | None = None

    def _now(self) -> float:
        if _is_cuda(self.device):
            torch.cuda.synchronize(self.device)
        return self.clock()

    def start_step(self) -> None:
        self._step_start = self._now()

    def end_step(self) -> float:
        """Record and return the time since ``start_step()``."""
        if self._step_start is None:
            raise RuntimeError("end_step() called without start_step()")
        elapsed = self._now() - self._step_start
        self._step_start = None
        self.step_times.append(elapsed)
        return elapsed

    @contextmanager
    def step(self) -> Iterator[None]:
        """Time the body as one step: ``with timer.step(): ...``."""
        self.start_step()
        yield
        self.end_step()

    def start_epoch(self) -> None:
        self._epoch_start = self._now()

    def end_epoch(self) -> float:
        """Record and return the time since ``start_epoch()``."""
        if self._epoch_start is None:
            raise RuntimeError("end_epoch() called without start_epoch()")
        elapsed = self._now() - self._epoch_start
        self._epoch_start = None
        self.epoch_times.append(elapsed)
        return elapsed

    def epoch_elapsed(self) -> float:
        """Time since ``start_epoch()``; 0 between epochs."""
        return 0.0 if self._epoch_start is None else self._now() - self._epoch_start

    def steady_state_step_s(self) -> float | None:
        """Median step time after the first ``warmup`` steps (None before any step).

        The first steps pay one-off costs (allocator growth, kernel selection, lazy
        initialisation, filling the prefix cache), so they are dropped; the median ignores
        the odd slow step (GC, evaluation). With too few steps to drop any, all are used.
        """
        if not self.step_times:
            return None
        steady = self.step_times[self.warmup :]
        if not steady:
            steady = self.step_times
        return float(statistics.median(steady))


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts, counting tied weights once.

    ``named_parameters()`` already skips a Parameter object it has yielded before
    (``remove_duplicate=True``), which is how Hugging Face ties weights (the same
    Parameter assigned to two modules), so a tied embedding/LM head counts once.
    """
    trainable = total = 0
    for _, param in model.named_parameters():
        n = param.numel()
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total

