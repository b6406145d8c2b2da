"""Fixed-seed tiny runs end in exactly these weights: any change to training's arithmetic shows here.

The digests were recorded with torch 2.13 and transformers 5.24 on a CPU. The starting weights are
set here, not by the library's initialisation (which changes between transformers releases), so
only the arithmetic of training decides them. A deliberate change of what training computes (a new
default, another order of operations) must update them in the same commit, and say why.
"""

import hashlib

import pytest
import torch

from conftest import tiny_classifier, toy_dataset
from freezetune import Finetuner, Plan


class TwoPhases:
    """The top block alone for four steps, then the top three: a schedule defined only here."""

    def plan_at(self, step, epoch, observations):
        return Plan(blocks=(3,), spec="phase-1") if step < 4 else Plan(blocks=(1, 2, 3), spec="phase-2")


RGN = Plan(blocks=(0, 1, 2, 3), embeddings=True, lr_rescale="rgn", spec="auto_rgn")

PINNED = {
    "full": "fa81f8e5efc1d542",
    "top_k:2": "8da49a0682e84a12",
    "alternate:lr_decay=2.6": "119944bc2f6ec5e8",
    "lora:r=4:blocks=2,3": "ec7d5f57071d6ab2",
    "bias": "2ef3c1b53600898b",
    "rgn": "e0e4de9287e77b69",
    "two_phases": "73ca06097ca5336a",
}
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


@pytest.mark.parametrize("name", list(PINNED))
def test_final_weights_are_pinned(name, two_threads):
    model = tiny_classifier()
    start_from_fixed_weights(model)
    tuner = Finetuner(model, STRATEGIES.get(name, name), progress=False, lr=3e-3, epochs=3, batch_size=8,
                      grad_accum=1 if name != "full" else 2, bucket=name == "top_k:2", seed=0)
    tuner.fit(toy_dataset(n=40, pairs=True), toy_dataset(n=16, seed=1))
    assert digest(tuner.model) == PINNED[name]
