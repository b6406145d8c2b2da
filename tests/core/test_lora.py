"""LoRA through PEFT, injected in place: exact counts, chosen blocks only, frozen base, merge, save."""


import pytest
import torch

from conftest import tiny_classifier, tiny_gpt2, tiny_llama, toy_batches
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap, frozen_state, trainable_count
from freezetune.core.lora import add_lora, lora_state_dict, merge_lora, peft_lora_config
from freezetune.core.model import SequenceClassifier
from freezetune.core.plan import LoraSpec
from freezetune.training.finetuner import Finetuner

HEAD = 32 * 3 + 3  # mean pooling: the classifier only (the pooler is dropped)


def quiet(**kw):
    return dict(progress=False, **kw)


def lora_names(model):
    return [n for n, _ in model.named_parameters() if "lora_" in n]


def inputs(vocab=100):
    batch = dict(toy_batches(vocab=vocab)[0])
    batch.pop("labels")
    return batch


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("lora:r=4", 4 * (32 + 32) * 2 * 4 + HEAD),  # query+value of all 4 blocks
        ("lora:r=4:blocks=2,3", 4 * (32 + 32) * 2 * 2 + HEAD),
        ("lora:r=2:targets=query+key+value", 2 * (32 + 32) * 3 * 4 + HEAD),
        ("lora:r=2:targets=intermediate.dense:blocks=3", 2 * (32 + 64) + HEAD),
    ],
)
def test_exact_trainable_count(spec, expected):
    model = tiny_classifier()
    tuner = Finetuner(model, spec, **quiet())
    assert trainable_count(tuner.model) == expected
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n) == HEAD


def test_model_is_adapted_in_place_and_names_stay_readable():
    model = tiny_classifier()
    tuner = Finetuner(model, "lora:r=4:blocks=2,3", **quiet())
    assert tuner.model is model and type(model) is SequenceClassifier
    assert tuner.layers.block_path == "backbone.encoder.layer"
    assert "backbone.encoder.layer.2.attention.self.query.lora_A.default.weight" in lora_names(model)
    assert "backbone.pooler" not in " ".join(lora_names(model))
    for name in lora_names(model):
        assert tuner.layers.groups[name] == "attention"
        assert tuner.layers.unit_of(name) == f"block.{name.split('.')[3]}"


def test_only_chosen_blocks_get_adapters_and_prefix_depth():
    model = tiny_classifier()
    tuner = Finetuner(model, "lora:r=4:blocks=2,3", **quiet())
    blocks = {int(n.split(".")[3]) for n in lora_names(model)}
    assert blocks == {2, 3}
    assert tuner.frozen_prefix_depth() == 2


def test_base_weights_bit_identical_after_training_adapters_and_head_change():
    model = tiny_classifier()
    tuner = Finetuner(model, "lora:r=4", **quiet(lr=1e-2, epochs=2))
    frozen = frozen_state(model)
    assert all("lora_" not in n and not n.startswith("classifier.") for n in frozen)
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    tuner.fit(toy_batches())
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], value) for n, value in frozen.items())
    changed = {n for n, value in trained.items() if not torch.equal(params[n], value)}
    assert {n for n in changed if "lora_A" in n} and {n for n in changed if "lora_B" in n}
    assert "classifier.weight" in changed


def test_lora_is_a_no_op_at_initialization():
    model = tiny_classifier().eval()
    batch = inputs()
    with torch.no_grad():
        before = model(**batch)
        add_lora(model, LoraSpec(r=4, alpha=16), LayerMap.from_model(model))
        after = model(**batch)
    assert lora_names(model)
    assert not any(m.training for m in model.modules())  # the injected dropouts follow eval mode
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)


def test_merge_matches_adapted_model_and_removes_adapters():
    model = tiny_classifier()
    tuner = Finetuner(model, "lora:r=4:blocks=1,3", **quiet(lr=1e-2, epochs=2))
    tuner.fit(toy_batches())
    model.eval()
    batch = inputs()
    with torch.no_grad():
        adapted = model(**batch)
        merged_model = merge_lora(model)
        merged = merged_model(**batch)
    assert not lora_names(merged_model)
    assert not hasattr(merged_model, "peft_config")
    assert "backbone.encoder.layer.3.attention.self.query.weight" in dict(merged_model.named_parameters())
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)
    assert not torch.allclose(merged, tiny_classifier().eval()(**batch), atol=1e-4)  # training did something
    LayerMap.from_model(merged_model)  # a plain model again


def test_lora_state_dict_holds_only_adapter_tensors():
    model = tiny_classifier()
    add_lora(model, LoraSpec(r=2, blocks=(0,)), LayerMap.from_model(model))
    state = lora_state_dict(model)
    assert len(state) == 4 and all("lora_" in n for n in state)
    assert sum(t.numel() for t in state.values()) == 2 * (32 + 32) * 2


def test_gpt2_auto_targets_fused_c_attn_conv1d():
    backbone = tiny_gpt2().transformer  # n_embd 16, 3 blocks, Conv1D c_attn 16 -> 48
    model = SequenceClassifier(backbone, num_labels=3, pooling="last")
    tuner = Finetuner(model, "lora:r=2", **quiet(lr=1e-2, epochs=2))
    names = lora_names(model)
    assert names and all(".attn.c_attn.lora_" in n for n in names)
    assert model.peft_config["default"].fan_in_fan_out
    head = 16 * 3 + 3 + 2 * 16  # classifier + final norm ln_f (the head unit)
    assert trainable_count(model) == 2 * (16 + 48) * 3 + head
    data = toy_batches(vocab=50)
    batch = inputs(vocab=50)
    model.eval()
    with torch.no_grad():
        start = model(**batch)
        plain = SequenceClassifier(tiny_gpt2().transformer, num_labels=3, pooling="last").eval()(**batch)
    torch.testing.assert_close(start, plain, atol=1e-6, rtol=0)  # a no-op at initialization
    tuner.fit(data)
    model.eval()
    with torch.no_grad():
        adapted = model(**batch)
        merged = merge_lora(model)(**batch)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)


def test_llama_auto_targets_q_and_v_proj():
    model = tiny_llama()
    layers = LayerMap.from_model(model)
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
        model, layers = add_lora(model, LoraSpec(r=2, blocks=(1, 3)), layers)
        after = model(input_ids=ids).logits
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    leaves = {n.split(".")[4] for n in lora_names(model)}  # model.layers.i.self_attn.X
    assert leaves == {"q_proj", "v_proj"}
    assert {int(n.split(".")[2]) for n in lora_names(model)} == {1, 3}
    # q_proj 16 -> 16, v_proj 16 -> 8 (one key/value head of size 8)
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == 2 * (2 * 32 + 2 * 24)
    assert all(layers.unit_of(n) in ("block.1", "block.3") for n in lora_names(model))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
        adapted = model(input_ids=ids).logits
        merged = merge_lora(model)(input_ids=ids).logits
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)


def test_unknown_target_lists_the_linear_layers():
    model = tiny_classifier()
    with pytest.raises(FreezetuneError, match=r"'q_proj'.*attention\.self\.query.*output\.dense"):
        add_lora(model, LoraSpec(targets=("q_proj",)), LayerMap.from_model(model))
    with pytest.raises(FreezetuneError, match="matches no linear layer"):
        Finetuner(tiny_classifier(), "lora:targets=query+nothing", **quiet())
    assert not lora_names(model)


def test_no_auto_targets_is_a_clear_error():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = torch.nn.Linear(4, 4)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([Block(), Block()])

    model = Net()
    with pytest.raises(FreezetuneError, match=r"automatically.*\(mix\)"):
        add_lora(model, LoraSpec(), LayerMap.from_model(model))
    model, _ = add_lora(model, LoraSpec(r=1, targets=("mix",)), LayerMap.from_model(model))
    assert len(lora_names(model)) == 4


def test_add_lora_is_idempotent_and_refuses_a_different_spec():
    model = tiny_classifier()
    spec = LoraSpec(r=4, blocks=(2, 3))
    model, layers = add_lora(model, spec, LayerMap.from_model(model))
    names, total = lora_names(model), layers.total()
    model, layers = add_lora(model, spec, layers)
    model, layers = add_lora(model, LoraSpec(r=4, blocks=(3, 2), targets=("query", "value")), layers)
    assert lora_names(model) == names and layers.total() == total
    assert not any("base_layer.base_layer" in n for n, _ in model.named_parameters())
    with pytest.raises(FreezetuneError, match="already carries different LoRA adapters"):
        add_lora(model, LoraSpec(r=8, blocks=(2, 3)), layers)
    with pytest.raises(FreezetuneError, match="already carries different LoRA adapters"):
        add_lora(model, LoraSpec(r=4, blocks=(1, 2, 3)), layers)


def test_schedule_switching_between_plans_with_the_same_lora_does_not_rewrap():
    from freezetune.strategies.registry import resolve

    model = tiny_classifier()
    layers = LayerMap.from_model(model)
    plain = resolve("lora:r=4:blocks=3", layers)
    with_head_off = plain.__class__(head=False, lora=plain.lora, spec="lora-nohead")

    class Alternate:
        def plan_at(self, step, epoch, observations):
            return plain if step % 2 == 0 else with_head_off

    tuner = Finetuner(model, Alternate(), **quiet(lr=1e-2, epochs=1))
    count = len(lora_names(model))
    tuner.fit(toy_batches())
    assert len(lora_names(model)) == count == 4


def test_block_out_of_range():
    model = tiny_classifier()
    with pytest.raises(FreezetuneError, match="out of range"):
        add_lora(model, LoraSpec(blocks=(7,)), LayerMap.from_model(model))


def test_the_peft_config_is_refused_for_another_lora_spec_than_the_models():
    """The one LoraConfig writer (io/export_peft.py builds on it) re-creates only the adapters the model has."""
    model = tiny_classifier()
    tuner = Finetuner(model, "lora:r=4:alpha=8:blocks=2,3", **quiet(lr=1e-2, epochs=1))
    config = peft_lora_config(model, tuner.plan.lora)
    assert config.r == 4 and config.lora_alpha == 8 and len(config.target_modules) == len(lora_names(model)) // 2
    with pytest.raises(FreezetuneError, match="not the LoRA spec"):
        peft_lora_config(model, LoraSpec(r=8))
