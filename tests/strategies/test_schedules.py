"""Every schedule's exact trainable set at given steps, on BERT, GPT-2 and Llama shapes."""

import pytest

import freezetune.scoring  # noqa: F401  (registers autofreeze)
from conftest import tiny_classifier, tiny_gpt2, tiny_llama
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, block_unit
from freezetune.strategies.registry import REGISTRY, listing, resolve

FACTORIES = [tiny_classifier, tiny_gpt2, tiny_llama]  # 4, 3 and 4 blocks


def blocks_at(spec, layers, steps, epoch_of=lambda step: 0):
    schedule = resolve(spec, layers)
    return [schedule.plan_at(step, epoch_of(step), {}).blocks for step in steps]


@pytest.mark.parametrize("factory", FACTORIES)
def test_lift_walks_one_block_at_a_time(factory):
    layers = LayerMap.from_model(factory())
    n = layers.num_blocks
    top_down = list(range(n - 1, -1, -1))
    assert blocks_at("lift:steps=3", layers, range(0, 3 * n, 3)) == [(b,) for b in top_down]
    assert blocks_at("lift:steps=3", layers, [1, 2, 3 * n]) == [(n - 1,), (n - 1,), (n - 1,)]  # and round again
    assert blocks_at("lift:order=bottom_up:steps=1", layers, range(n)) == [(b,) for b in range(n)]
    by_epoch = blocks_at("lift:epochs=2", layers, range(4), epoch_of=lambda step: step)
    assert by_epoch == [(n - 1,), (n - 1,), (n - 2,), (n - 2,)]
    assert blocks_at("lift:blocks=0,2:steps=1", layers, range(3)) == [(2,), (0,), (2,)]
    walk = [b for (b,) in blocks_at("lift:order=random:steps=1:seed=3", layers, range(n))]
    assert sorted(walk) == list(range(n))  # every block once per pass, in a seeded order
    assert walk == [b for (b,) in blocks_at("lift:order=random:steps=1:seed=3", layers, range(n))]
    plan = resolve("lift", layers).plan_at(0, 0, {})
    assert plan.head and not plan.embeddings and plan.frozen_prefix_depth(n) == n - 1  # backprop stops below


@pytest.mark.parametrize("factory", FACTORIES)
def test_gradual_unfreeze_opens_one_more_block_from_the_top(factory):
    layers = LayerMap.from_model(factory())
    n = layers.num_blocks
    epochs = blocks_at("gradual_unfreeze", layers, range(n + 2), epoch_of=lambda step: step)
    assert epochs == [tuple(range(n - k, n)) for k in range(n + 1)] + [tuple(range(n))]
    assert blocks_at("gradual_unfreeze:steps=5", layers, [0, 4, 5, 10]) == [(), (), (n - 1,), (n - 2, n - 1)]
    plan = resolve("gradual_unfreeze", layers).plan_at(0, n, {})
    assert plan.lr_multiplier(block_unit(n - 1)) == 1.0
    assert plan.lr_multiplier(block_unit(0)) == pytest.approx(2.6 ** -(n - 1))
    assert resolve("gradual_unfreeze:lr_decay=2", layers).plan_at(0, n, {}).lr_multiplier(block_unit(n - 2)) == 0.5


@pytest.mark.parametrize("factory", FACTORIES)
def test_lisa_trains_embeddings_head_and_gamma_drawn_blocks(factory):
    layers = LayerMap.from_model(factory())
    schedule = resolve("lisa:2:interval=5:seed=1", layers)
    plans = [schedule.plan_at(step, 0, {}) for step in range(0, 40)]
    assert all(p.embeddings and p.head and len(p.blocks) == 2 for p in plans)
    assert all(plans[s] == plans[s - s % 5] for s in range(40))  # fixed within an interval
    assert len({p.blocks for p in plans}) > 1  # re-drawn across intervals
    assert [p.blocks for p in plans] == [resolve("lisa:2:interval=5:seed=1", layers).plan_at(s, 0, {}).blocks
                                         for s in range(40)]
    assert plans[0].frozen_prefix_depth(layers.num_blocks) == 0  # embeddings train: nothing to cache


@pytest.mark.parametrize("factory", FACTORIES)
def test_hft_trains_half_of_each_blocks_weight_groups(factory):
    model = factory()
    layers = LayerMap.from_model(model)
    schedule = resolve("hft:steps=4", layers)
    first, same, second = (schedule.plan_at(s, 0, {}) for s in (0, 3, 4))
    assert first == same and first != second
    for plan in (first, second):
        trained = plan.trainable_names(layers)
        for i in range(layers.num_blocks):
            names = layers.units[block_unit(i)]
            for group in ("attention", "ffn", "norm"):
                modules = {n.rsplit(".", 1)[0] for n in names if layers.groups[n] == group}
                chosen = {n.rsplit(".", 1)[0] for n in names if layers.groups[n] == group and n in trained}
                assert len(chosen) == -(-len(modules) // 2)  # half, rounded up, of the group's modules
                # a module trains whole (weight and bias together) or not at all
                assert all(n in trained for n in names if n.rsplit(".", 1)[0] in chosen)
        assert not any(n in trained for n in layers.units["embeddings"])
        assert all(n in trained for n in layers.units["head"])


def test_autofreeze_freezes_the_settled_prefix_from_measured_gradients():
    model = tiny_classifier()
    layers = LayerMap.from_model(model)
    schedule = resolve("autofreeze:interval=2:tolerance=0.1", layers)
    assert schedule.plan_at(0, 0, {}).blocks == (0, 1, 2, 3) and schedule.plan_at(0, 0, {}).embeddings

    class Tuner:  # what the callback reads: the block path, the model with gradients
        pass

    tuner = Tuner()
    tuner.layers, tuner.model = layers, model
    params = dict(model.named_parameters())

    def interval(norms, step):
        for _ in range(2):
            for name, p in params.items():
                p.grad = None
            for i, norm in enumerate(norms):
                weight = params[f"backbone.encoder.layer.{i}.output.dense.weight"]
                weight.grad = weight.detach().new_zeros(weight.shape)
                weight.grad.view(-1)[0] = norm
            schedule.before_optimizer_step(tuner)
        schedule.on_step_end(tuner, {"step": step})

    interval([1.0, 1.0, 1.0, 1.0], 2)
    assert schedule.plan_at(2, 0, {}).blocks == (0, 1, 2, 3)  # one interval: nothing to compare yet
    interval([1.05, 1.0, 2.0, 1.0], 4)  # blocks 0, 1 and 3 settled; 2 did not, so the prefix stops there
    plan = schedule.plan_at(4, 0, {})
    assert plan.blocks == (2, 3) and not plan.embeddings
    interval([1.05, 1.0, 2.0, 1.0], 6)
    assert schedule.plan_at(6, 0, {}).blocks == (3,)  # the top block always trains
    assert [entry["depth"] for entry in schedule.log] == [2, 3]


@pytest.mark.parametrize("spec, message", [
    ("lift:order=sideways", "unknown order .sideways. in .lift:order=sideways.; choose from top_down, bottom_up"),
    ("lift:blocks=9", "block 9 is out of range"),
    ("lift:epochs=0", "epochs >= 1"),
    ("lisa:9", "1 <= gamma <= 4"),
    ("lisa:interval=0", "interval >= 1"),
    ("autofreeze:interval=0", "interval >= 1"),
    ("hft:head=false", "has no option 'head'"),  # schedules choose their plans: no per-plan options
])
def test_bad_schedule_options_are_clear_errors(spec, message):
    with pytest.raises(FreezetuneError, match=message):
        resolve(spec, LayerMap.from_model(tiny_classifier()))


def test_schedules_cite_their_papers_in_the_listing():
    text = listing()
    for name, citation in [("lift", "u0INlprg3U"), ("gradual_unfreeze", "1801.06146"), ("lisa", "2403.17919"),
                           ("hft", "2404.18466"), ("autofreeze", "2102.01386")]:
        assert REGISTRY[name].schedule and citation in text
