"""Frozen-prefix cache: suffix forward is exact, cached training equals uncached, never stale."""

import pytest
import torch

from conftest import tiny_classifier, tiny_gpt2, tiny_llama, toy_dataset
from freezetune.core.layout import LayerMap
from freezetune.core.model import SequenceClassifier
from freezetune.io.loader import make_loader
from freezetune.training.callbacks import Callback
from freezetune.training.finetuner import Finetuner
from freezetune.training.prefix_cache import (
    CacheKey,
    CacheStore,
    PrefixCache,
    build_cache,
    data_fingerprint,
    prefix_fingerprint,
    start_at,
)


def cache_for(model, depth, data):
    layers = LayerMap.from_model(model)
    indexed = data.add_column("index", list(range(len(data))))
    key = CacheKey(prefix_fingerprint(layers, depth), depth, data_fingerprint(data), "t")
    lengths = [len(x) for x in data["input_ids"]]
    loader = make_loader(indexed, batch_size=8, shuffle=False)
    return layers, build_cache(layers, depth, loader, lengths, key, device=torch.device("cpu")), indexed


def decoder_classifier(factory):
    lm = factory()
    return SequenceClassifier(lm.base_model, num_labels=3, pooling="last")


@pytest.mark.parametrize("factory", [lambda: tiny_classifier("cls"), lambda: tiny_classifier("mean"),
                                     lambda: decoder_classifier(tiny_llama), lambda: decoder_classifier(tiny_gpt2)])
def test_suffix_forward_from_cache_equals_full_forward(factory):
    model = factory().eval()
    data = toy_dataset(n=16, vocab=50, pairs=isinstance(model.backbone.config.model_type, str)
                       and model.backbone.config.model_type == "bert")
    for depth in range(LayerMap.from_model(model).num_blocks + 1):
        layers, cache, indexed = cache_for(model, depth, data)
        for batch in make_loader(indexed, batch_size=8, shuffle=False):
            index = batch.pop("index")
            batch.pop("labels")
            with torch.no_grad():
                full = model(**batch)
                with start_at(layers, depth, cache.fetch(index, batch["attention_mask"])):
                    cached = model(**batch)
            assert torch.allclose(full, cached, atol=1e-5), depth
    # the real block list is back after every call
    assert len(layers.blocks) == layers.num_blocks


def losses(cache_mode, strategy="lower_half", **extra):
    model = tiny_classifier()
    seen = []

    class Record(Callback):
        def on_step_end(self, tuner, record):
            seen.append(record["loss"])

    tuner = Finetuner(model, strategy, progress=False, lr=3e-3, epochs=3, batch_size=8, cache=cache_mode,
                      callbacks=[Record()], **extra)
    data = toy_dataset(pairs=True)
    result = tuner.fit(data, toy_dataset(n=16, seed=1, pairs=True))
    return seen, result


@pytest.mark.parametrize("strategy", ["lower_half", "top_k:1", "head_only", "layers:1,3"])
def test_cached_and_uncached_training_give_the_same_losses(strategy):
    uncached, plain = losses("off", strategy)
    cached, fast = losses("on", strategy)
    assert fast.costs["cache"].startswith("on") and plain.costs["cache"] == "off: --cache off"
    assert fast.costs["cache_bytes"] > 0
    assert len(cached) == len(uncached) == 15
    assert cached == pytest.approx(uncached, abs=1e-4)
    assert fast.best_metrics["loss"] == pytest.approx(plain.best_metrics["loss"], abs=1e-4)


def test_disk_spill_and_half_precision_storage():
    uncached, _ = losses("off")
    on_disk, result = losses("on", cache_ram_gb=0.0)
    assert "disk" in result.costs["cache"]
    assert on_disk == pytest.approx(uncached, abs=1e-4)
    half, result = losses("on", cache_dtype="bf16")
    assert "bf16" in result.costs["cache"]
    assert half == pytest.approx(uncached, abs=5e-2)


@pytest.mark.parametrize("strategy, extra, reason", [
    ("full", {}, "nothing is frozen"),
    ("lower_half", {"epochs": 1}, "single pass"),
    ("lower_half", {"cache": "off"}, "--cache off"),
])
def test_cache_says_when_it_is_off_and_why(strategy, extra, reason):
    tuner = Finetuner(tiny_classifier(), strategy, progress=False, **{"epochs": 2, **extra})
    result = tuner.fit(toy_dataset(n=16))
    assert result.costs["cache"].startswith("off") and reason in result.costs["cache"]


def test_cache_key_changes_with_prefix_weights_and_data():
    model = tiny_classifier()
    layers = LayerMap.from_model(model)
    before = prefix_fingerprint(layers, 2)
    assert prefix_fingerprint(layers, 2) == before
    with torch.no_grad():
        model.backbone.encoder.layer[3].output.dense.weight.add_(1.0)  # above the boundary
    assert prefix_fingerprint(layers, 2) == before
    with torch.no_grad():
        model.backbone.encoder.layer[1].output.dense.weight.add_(1.0)  # inside the prefix
    assert prefix_fingerprint(layers, 2) != before
    assert data_fingerprint(toy_dataset(seed=0)) != data_fingerprint(toy_dataset(seed=1))
    a = CacheKey("p", 2, "d", "t").digest()
    assert a != CacheKey("p", 3, "d", "t").digest() and a != CacheKey("p", 2, "d", "u").digest()


def test_store_and_fetch_round_trip_real_tokens_only():
    cache = PrefixCache(CacheKey("p", 1, "d", "t"), [2, 3], hidden_size=4)
    hidden = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    cache.store(torch.tensor([0, 1]), hidden, mask)
    out = cache.fetch(torch.tensor([1, 0]), torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert torch.equal(out[0], hidden[1]) and torch.equal(out[1, :2], hidden[0, :2])
    assert torch.equal(out[1, 2], torch.zeros(4))  # padding is zeros, never another example
    assert cache.bytes == 5 * 4 * 4


def test_a_second_run_on_the_same_data_and_prefix_reuses_the_cache():
    store = CacheStore()  # what a sweep hands to each of its runs
    data, held_out = toy_dataset(pairs=True), toy_dataset(n=16, seed=1, pairs=True)
    first = Finetuner(tiny_classifier(), "lower_half", progress=False, epochs=2, batch_size=8,
                      cache_store=store).fit(data, held_out)
    again = Finetuner(tiny_classifier(), "lower_half", progress=False, epochs=2, batch_size=8, lr=1e-2,
                      cache_store=store)
    second = again.fit(data, held_out)
    assert "reused" not in first.costs["cache"] and "2 of 2 reused" in second.costs["cache"]
    other = tiny_classifier()
    with torch.no_grad():
        other.backbone.encoder.layer[0].output.dense.weight.add_(0.5)  # a different frozen prefix
    third = Finetuner(other, "lower_half", progress=False, epochs=2, batch_size=8, cache_store=store)
    assert "reused" not in third.fit(data, held_out).costs["cache"]
    # without a store nothing is shared: each Finetuner keeps its own
    alone = Finetuner(tiny_classifier(), "lower_half", progress=False, epochs=2, batch_size=8).fit(data, held_out)
    assert "reused" not in alone.costs["cache"]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_past_the_ram_limit_only_the_rest_spills_to_disk_and_reads_back_the_same(dtype, tmp_path):
    model = tiny_classifier().eval()
    layers = LayerMap.from_model(model)
    data = toy_dataset(n=16).add_column("index", list(range(16)))
    lengths = [len(x) for x in data["input_ids"]]
    key = CacheKey(prefix_fingerprint(layers, 2), 2, data_fingerprint(data), "t", dtype)
    row_bytes = 32 * (4 if dtype == "fp32" else 2)  # hidden size 32

    def build(limit):
        return build_cache(layers, 2, make_loader(data, batch_size=8, shuffle=False), lengths, key,
                           device=torch.device("cpu"), dtype=dtype, ram_limit_bytes=limit, directory=str(tmp_path))

    whole, split = build(2**30), build(40 * row_bytes + 7)  # 40 rows fit; the 7 spare bytes hold no row
    assert not whole.on_disk and whole.ram_rows == sum(lengths) == 143
    assert split.ram_rows == 40 and split.ram_bytes == 40 * row_bytes and split.disk.shape == (103, 32)
    assert [p.name.startswith("freezetune-cache-") for p in tmp_path.iterdir()] == [True]  # in the --cache-dir
    assert split.disk.dtype == whole.ram.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    assert torch.equal(split.states, whole.states)
    for batch in make_loader(data, batch_size=8, shuffle=False):  # an example astride the two parts too
        assert torch.equal(split.fetch(batch["index"], batch["attention_mask"]),
                           whole.fetch(batch["index"], batch["attention_mask"]))
