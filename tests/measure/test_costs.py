"""costs.py: peak memory of a region, step timing, parameter counts, byte formatting."""

import time

import pytest
import torch

from freezetune.core.memory import release_free_memory
from freezetune.measure.costs import PeakMemory, StepTimer, count_parameters

MB = 1_000_000


def test_peak_memory_sees_a_large_allocation_that_is_freed_inside_the_region():
    # Earlier tests may leave hundreds of MiB free but resident in the C heap; an allocation served from
    # them does not raise RSS (the process's footprint truly does not grow). Hand them back first.
    release_free_memory()
    with PeakMemory(device="cpu") as pm:
        x = torch.ones(50_000_000, dtype=torch.float32)  # 191 MiB, pages touched by ones()
        # several sampling intervals; on a busy machine the sampler thread may wait its turn longer
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pm.peak_bytes - pm.baseline_bytes < 150 * MB:
            time.sleep(0.05)
        del x
    assert pm.kind == "rss"
    assert pm.peak_bytes - pm.baseline_bytes >= 150 * MB
    assert pm.delta_bytes == pm.peak_bytes - pm.baseline_bytes


def test_peak_memory_start_stop_and_a_quiet_region():
    pm = PeakMemory(device="cpu").start()
    time.sleep(0.05)
    peak = pm.stop()
    assert peak == pm.peak_bytes > 0
    # Nothing big happened, so the peak stays near the baseline (allow interpreter noise).
    assert pm.delta_bytes < 50 * MB
    assert pm._thread is None  # the sampler thread has ended


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_cuda():
    with PeakMemory(device="cuda") as pm:
        x = torch.ones(50_000_000, device="cuda")
        del x
    assert pm.kind == "cuda_max_allocated"
    assert pm.delta_bytes >= 200 * MB - 1


class FakeClock:
    """Returns queued timestamps so step times are exact."""

    def __init__(self, durations):
        self.times = [0.0]
        for d in durations:
            self.times += [self.times[-1], self.times[-1] + d]
        self.times = self.times[1:]

    def __call__(self):
        return self.times.pop(0)


def run_steps(timer, n):
    for _ in range(n):
        with timer.step():
            pass


def test_step_timer_discards_warmup_and_takes_median():
    durations = [5.0, 4.0, 3.0, 2.0, 1.5, 0.10, 0.12, 0.50, 0.11]
    timer = StepTimer(warmup=5, clock=FakeClock(durations))
    run_steps(timer, len(durations))
    assert timer.step_times == pytest.approx(durations)
    # steady steps: 0.10 0.12 0.50 0.11 -> median 0.115 (the 0.50 outlier is ignored)
    assert timer.steady_state_step_s() == pytest.approx(0.115)


def test_step_timer_with_too_few_steps_uses_all():
    timer = StepTimer(warmup=5, clock=FakeClock([3.0, 1.0, 2.0]))
    run_steps(timer, 3)
    assert timer.steady_state_step_s() == pytest.approx(2.0)
    assert StepTimer().steady_state_step_s() is None


def test_step_timer_epochs_and_misuse():
    timer = StepTimer(clock=FakeClock([10.0, 12.5]))
    for _ in range(2):
        timer.start_epoch()
        timer.end_epoch()
    assert timer.epoch_times == [10.0, 12.5]
    with pytest.raises(RuntimeError):
        StepTimer().end_step()


def test_step_timer_real_clock_measures_sleep():
    timer = StepTimer(warmup=0)
    with timer.step():
        time.sleep(0.02)
    assert 0.015 < timer.steady_state_step_s() < 1.0


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)  # 40
        self.body = torch.nn.Linear(4, 4)  # 20
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied: the same Parameter in two modules


def test_count_parameters_counts_tied_weights_once():
    model = Tied()
    assert count_parameters(model) == (60, 60)
    model.body.requires_grad_(False)
    assert count_parameters(model) == (40, 60)
    model.embed.weight.requires_grad_(False)  # freezes the head too: it is the same tensor
    assert count_parameters(model) == (0, 60)
