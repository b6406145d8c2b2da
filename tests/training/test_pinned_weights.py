"""Fixed-seed tiny runs end in exactly these weights: any change to training's arithmetic shows here.

The digests were recorded with torch 2.13 on a CPU. A deliberate change of what training computes
(a new default, another order of operations) must update them in the same commit, and say why.
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
    "full": "9a2121bb67e98702",
    "top_k:2": "2b20a8ff71a16063",
    "alternate:lr_decay=2.6": "20b79e3e741dd668",
    "lora:r=4:blocks=2,3": "d716be6659f0094b",
    "bias": "503cfb0940df00c6",
    "rgn": "504a97150be5869e",
    "two_phases": "218111ed7cc29994",
}
STRATEGIES = {"rgn": RGN, "two_phases": TwoPhases()}


def digest(model) -> str:
    sha = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        sha.update(name.encode())
        sha.update(param.detach().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


@pytest.mark.parametrize("name", list(PINNED))
def test_final_weights_are_pinned(name):
    torch.manual_seed(0)
    model = tiny_classifier()
    tuner = Finetuner(model, STRATEGIES.get(name, name), progress=False, lr=3e-3, epochs=3, batch_size=8,
                      grad_accum=1 if name != "full" else 2, bucket=name == "top_k:2", seed=0)
    tuner.fit(toy_dataset(n=40, pairs=True), toy_dataset(n=16, seed=1))
    assert digest(tuner.model) == PINNED[name]
