"""Fixed-seed tiny runs end in exactly these weights: any change to training's arithmetic shows here.

The digests hold for the versions in RECORDED_WITH (those of requirements.lock), on a CPU with two
threads; with other versions the test skips and says which. The starting weights are set here, not
by the library's initialisation (which changes between transformers releases), but kernels and
module code still change between releases, so a bit-exact digest is only a test under the lock.
A deliberate change of what training computes (a new default, another order of operations) must
update them in the same commit, and say why.
"""

import hashlib
from pathlib import Path

import pytest
import torch
import transformers

from conftest import tiny_classifier, toy_dataset
from freezetune import Finetuner, Plan


class TwoPhases:
    """The top block alone for four steps, then the top three: a schedule defined only here."""

    def plan_at(self, step, epoch, observations):
        return Plan(blocks=(3,), spec="phase-1") if step < 4 else Plan(blocks=(1, 2, 3), spec="phase-2")


RGN = Plan(blocks=(0, 1, 2, 3), embeddings=True, lr_rescale="rgn", spec="auto_rgn")

# Bit-exact only where the arithmetic is the same: the same torch and transformers (those of
# requirements.lock) and the same CPU kernels. torch and MKL pick their vector kernels by what the CPU
# offers, and AVX2 kernels round differently from AVX-512 ones, so the digests are kept per kernel set.
# The AVX2 ones were taken on an AVX-512 Intel CPU with ATEN_CPU_CAPABILITY=avx2
# MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2, the kernels an AVX2 Intel CPU runs.
# Re-record them (print `digest` for each name, under both settings) when `make lock` moves torch or transformers.
RECORDED_WITH = {"torch": "2.13.0+cpu", "transformers": "5.25.0"}
PINNED_BY_KERNELS = {
    ("GenuineIntel", "AVX512"): {
        "full": "fa81f8e5efc1d542",
        "top_k:2": "8da49a0682e84a12",
        "alternate:lr_decay=2.6": "119944bc2f6ec5e8",
        "lora:r=4:blocks=2,3": "ec7d5f57071d6ab2",
        "bias": "2ef3c1b53600898b",
        "rgn": "e0e4de9287e77b69",
        "two_phases": "73ca06097ca5336a",
    },
    ("GenuineIntel", "AVX2"): {
        "full": "4da6b952ef02c297",
        "top_k:2": "a661cdb0fab32152",
        "alternate:lr_decay=2.6": "db595195dfe626fb",
        "lora:r=4:blocks=2,3": "93f0357b20b1e1c8",
        "bias": "6ed85d2d7443f968",
        "rgn": "c1b58e78bae64aeb",
        "two_phases": "59b4e479bcf41a80",
    },
}
NAMES = list(PINNED_BY_KERNELS[("GenuineIntel", "AVX512")])


def cpu_kernels() -> tuple[str, str]:
    """(CPU vendor, the vector kernels torch dispatches to)."""
    vendor = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("vendor_id")), "unknown")
    return vendor, torch.backends.cpu.get_cpu_capability()


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


STRATEGIES = {"rgn": RGN, "two_phases": TwoPhases()}


def digest(model) -> str:
    sha = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        sha.update(name.encode())
        sha.update(param.detach().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


@pytest.fixture
def two_threads():
    """Reductions split across threads sum in another order: the digests were taken with 2."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def start_from_fixed_weights(model) -> None:
    """Norms at 1 and 0, every other tensor drawn from one seeded generator in name order."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "LayerNorm" in name:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.mark.parametrize("name", NAMES)
def test_final_weights_are_pinned(name, two_threads):
    installed = {"torch": torch.__version__, "transformers": transformers.__version__}
    if installed != RECORDED_WITH:
        pytest.skip(f"digests recorded with torch {RECORDED_WITH['torch']} and transformers "
                    f"{RECORDED_WITH['transformers']}; installed: torch {installed['torch']}, "
                    f"transformers {installed['transformers']}")
    kernels = cpu_kernels()
    if kernels not in PINNED_BY_KERNELS:
        pytest.skip(f"no digests recorded for {' '.join(kernels)} CPU kernels (recorded: "
                    f"{', '.join(' '.join(k) for k in PINNED_BY_KERNELS)})")
    model = tiny_classifier()
    start_from_fixed_weights(model)
    tuner = Finetuner(model, STRATEGIES.get(name, name), progress=False, lr=3e-3, epochs=3, batch_size=8,
                      grad_accum=1 if name != "full" else 2, bucket=name == "top_k:2", seed=0)
    tuner.fit(toy_dataset(n=40, pairs=True), toy_dataset(n=16, seed=1))
    assert digest(tuner.model) == PINNED_BY_KERNELS[kernels][name]
