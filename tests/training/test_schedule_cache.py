"""Frozen-prefix caches under schedules: one pass for pristine boundaries, advanced ones, never stale."""

import pytest
import torch

from conftest import tiny_classifier, tiny_gpt2, tiny_llama, toy_dataset
from freezetune import Callback, Finetuner
from freezetune.core.layout import LayerMap
from freezetune.core.model import SequenceClassifier
from freezetune.io.loader import make_loader
from freezetune.strategies.registry import resolve
from freezetune.training.prefix_cache import CacheKey, build_cache, build_caches, data_fingerprint, prefix_fingerprint
from freezetune.training.schedule_cache import pristine_depths
from tolerances import forward_atol, trained_atol


class Fresh(Callback):
    """At every step: which boundary the cache serves, and that its prefix weights are the current ones."""

    def __init__(self):
        self.served, self.stale = [], []

    def before_optimizer_step(self, tuner):
        cache = tuner.train_cache
        self.served.append(cache.depth if cache is not None else None)
        if cache is not None and cache.key.prefix != prefix_fingerprint(tuner.layers, cache.depth):
            self.stale.append(tuner.state.step)


def fit(strategy, cache, epochs=3, factory=tiny_classifier, vocab=100):
    model = factory()
    fresh = Fresh()
    tuner = Finetuner(model, strategy, callbacks=[fresh], progress=False, lr=3e-3, epochs=epochs, batch_size=8,
                      cache=cache)
    result = tuner.fit(toy_dataset(n=40, vocab=vocab), toy_dataset(n=16, seed=1, vocab=vocab))
    return {n: p.detach().clone() for n, p in model.named_parameters()}, tuner, result, fresh


# 5 steps per epoch, 4 blocks. Phases of 5 steps = one pass each, so every boundary pays for its cache.
@pytest.mark.parametrize("strategy, served, events", [
    # top-down: blocks 3, 2, 1, 0 (then 3, 2 again); boundaries 3, 2, 1 stored in one pass
    ("lift:steps=5", [3] * 5 + [2] * 5 + [1] * 5, ["boundaries [1, 2, 3] in one pass"]),
    # the head alone, then one more block every 5 steps from the top: pristine boundaries, descending
    ("gradual_unfreeze:steps=5", [4] * 5 + [3] * 5 + [2] * 5, ["boundaries [2, 3, 4] in one pass"]),
    # bottom-up: block 0 trains, then 1, then 2; the boundary climbs through trained blocks
    ("lift:order=bottom_up:steps=5", [None] * 5 + [1] * 5 + [2] * 5,
     ["boundaries [1] in one pass", "advanced from boundary 1 to 2"]),
])
def test_schedule_caches_serve_every_boundary_fresh_and_train_the_same_weights(strategy, served, events):
    reference, _, _, _ = fit(strategy, cache="off")
    weights, tuner, result, fresh = fit(strategy, cache="auto")
    assert fresh.served == served
    assert not fresh.stale
    assert tuner.schedule_caches.events == events
    assert result.costs["cache"].startswith("on: per boundary")
    assert result.costs["cache_bytes"] > 0
    # the cached forward is the uncached one: the same final weights, up to rounding over 15 steps
    assert weights.keys() == reference.keys()
    assert all(torch.allclose(weights[n], reference[n], atol=trained_atol(15), rtol=0) for n in weights)


def test_short_phases_are_not_cached_and_cache_off_is_honoured():
    _, tuner, result, fresh = fit("lift:steps=2", cache="auto")  # 2 steps per boundary: less than one pass
    assert set(fresh.served) == {None} and not tuner.schedule_caches.events
    _, tuner, result, fresh = fit("lift:steps=5", cache="off")
    assert tuner.schedule_caches is None and set(fresh.served) == {None}
    assert result.costs["cache"].startswith("off")


def decoder(factory):
    return lambda: SequenceClassifier(factory().base_model, num_labels=3, pooling="last")


@pytest.mark.parametrize("factory", [decoder(tiny_llama), decoder(tiny_gpt2)], ids=["llama", "gpt2"])
@pytest.mark.parametrize("strategy", ["lift:steps=5", "lift:order=bottom_up:steps=5"])
def test_schedule_caches_on_decoders_train_the_same_weights(factory, strategy):
    """Rotary embeddings and causal masks come from the model's own forward, cached or not."""
    reference, _, _, _ = fit(strategy, cache="off", factory=factory, vocab=50)
    weights, tuner, _, fresh = fit(strategy, cache="auto", factory=factory, vocab=50)
    assert tuner.schedule_caches.events and not fresh.stale and any(d is not None for d in fresh.served)
    # 15 steps (5 per epoch, 3 epochs); measured apart by 2.4e-6 to 3.6e-6 with transformers 5.25
    assert all(torch.allclose(weights[n], reference[n], atol=trained_atol(15), rtol=0) for n in weights)


def test_one_pass_and_advanced_caches_equal_caches_built_alone():
    model = tiny_classifier().eval()
    layers = LayerMap.from_model(model)
    data = toy_dataset(n=24)
    indexed = data.add_column("index", list(range(len(data))))
    lengths = [len(x) for x in data["input_ids"]]
    cpu = torch.device("cpu")

    def key(d):
        return CacheKey(prefix_fingerprint(layers, d), d, data_fingerprint(data), "t")

    def loader():
        return make_loader(indexed, batch_size=8, shuffle=False)

    alone = {d: build_cache(layers, d, loader(), lengths, key(d), device=cpu) for d in (1, 2, 4)}
    together = build_caches(layers, {d: key(d) for d in (1, 2, 4)}, loader(), lengths, device=cpu)
    advanced = build_cache(layers, 4, loader(), lengths, key(4), device=cpu, source=alone[1])
    for d in (1, 2, 4):
        assert torch.equal(alone[d].states, together[d].states)
    assert torch.allclose(alone[4].states, advanced.states, atol=forward_atol(), rtol=0)  # blocks 1-3 rerun
    with pytest.raises(ValueError, match="cannot be advanced"):
        build_cache(layers, 1, loader(), lengths, key(1), device=cpu, source=alone[2])


def test_pristine_boundaries_are_read_off_the_plans():
    layers = LayerMap.from_model(tiny_classifier())
    top_down = [resolve(f"layers:{b}", layers) for b in (3, 2, 1, 0)]
    assert pristine_depths(top_down, 4) == [1, 2, 3]
    bottom_up = [resolve(f"layers:{b}", layers) for b in (0, 1, 2, 3)]
    assert pristine_depths(bottom_up, 4) == []  # every boundary above 0 has trained blocks below it
    assert pristine_depths([resolve("full", layers), resolve("layers:3", layers)], 4) == []  # embeddings trained
