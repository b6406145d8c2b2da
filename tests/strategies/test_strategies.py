"""Every strategy's exact semantics and trainable-parameter counts; the spec grammar; errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import freezetune.scoring  # noqa: F401  (the scoring layer registers auto and auto_rgn)
from conftest import tiny_classifier, tiny_gpt2, tiny_llama, toy_batches
from freezetune.core.errors import FreezetuneError
from freezetune.core.layout import LayerMap
from freezetune.core.plan import Plan
from freezetune.core.spec import parse_blocks, parse_spec
from freezetune.strategies.registry import REGISTRY, ResolveContext, listing, needs_context, register, resolve

BLOCK = 8544  # tiny BERT block (see test_layout)
HEAD = 99  # mean-pooled classifier head
EMB = 5376
BLOCK_BIASES = 4 * 32 + 32 + 64 + 32 + 32  # Q/K/V/out, attn LN, FFN in/out, out LN
BLOCK_ATTENTION = 4 * (32 * 32 + 32)
BLOCK_FFN = (32 * 64 + 64) + (64 * 32 + 32)
BLOCK_NORM = 2 * 2 * 32

BERT_COUNTS = {
    "full": EMB + 4 * BLOCK + HEAD,
    "head_only": HEAD,
    "lower_half": 2 * BLOCK + HEAD,  # blocks 2, 3
    "alternate": 2 * BLOCK + HEAD,  # blocks 1, 3
    "top_k:1": BLOCK + HEAD,
    "top_k:k=4": 4 * BLOCK + HEAD,
    "top_k:0": HEAD,
    "depth:1": 3 * BLOCK + HEAD,
    "layers:0,2-3": 3 * BLOCK + HEAD,
    "layers:blocks=3:modules=attention+norm": BLOCK_ATTENTION + BLOCK_NORM + HEAD,
    "bias": 4 * BLOCK_BIASES + HEAD,
    "attention": 4 * BLOCK_ATTENTION + HEAD,
    "ffn:2-3": 2 * BLOCK_FFN + HEAD,
    "norm": 4 * BLOCK_NORM + HEAD,
    "full:head=false": EMB + 4 * BLOCK,
    "top_k:2:embeddings=true": EMB + 2 * BLOCK + HEAD,
}


@pytest.mark.parametrize("spec, expected", BERT_COUNTS.items())
def test_exact_trainable_counts_on_tiny_bert(spec, expected):
    model = tiny_classifier()
    layers = LayerMap.from_model(model)
    plan = resolve(spec, layers)
    assert plan.apply(model, layers) == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


def test_strategy_block_sets_follow_the_shared_definitions():
    layers = LayerMap.from_model(tiny_classifier(num_blocks=6))
    assert resolve("alternate", layers).blocks == (1, 3, 5)  # even blocks 0, 2, 4 frozen
    assert resolve("lower_half", layers).blocks == (3, 4, 5)
    assert resolve("top_k:2", layers).blocks == (4, 5)
    assert resolve("top_k:2", layers).frozen_prefix_depth(6) == 4
    assert resolve("head_only", layers).frozen_prefix_depth(6) == 6
    assert resolve("full", layers).frozen_prefix_depth(6) == 0
    assert resolve("layers:1,4", layers).frozen_prefix_depth(6) == 1
    odd = LayerMap.from_model(tiny_classifier(num_blocks=5))
    assert resolve("lower_half", odd).blocks == (3, 4)  # blocks < 2.5 frozen


GPT2_COUNTS = {"full": 11184, "head_only": 32, "top_k:1": 3280 + 32, "alternate": 3280 + 32,
               "attention": 3 * (16 * 48 + 48 + 16 * 16 + 16) + 32}
LLAMA_COUNTS = {"full": 10160, "head_only": 16, "top_k:2": 2 * 2336 + 16, "lower_half": 2 * 2336 + 16,
                "norm": 4 * 32 + 16}


@pytest.mark.parametrize("factory, counts", [(tiny_gpt2, GPT2_COUNTS), (tiny_llama, LLAMA_COUNTS)])
def test_exact_counts_on_decoders(factory, counts):
    for spec, expected in counts.items():
        model = factory()
        layers = LayerMap.from_model(model)
        assert resolve(spec, layers).apply(model, layers) == expected, spec


def test_tied_embedding_trains_only_with_embeddings():
    model = tiny_gpt2()
    layers = LayerMap.from_model(model)
    resolve("head_only", layers).apply(model, layers)
    assert not model.lm_head.weight.requires_grad  # the tied lm_head is the frozen embedding
    resolve("head_only:embeddings=true", layers).apply(model, layers)
    assert model.lm_head.weight.requires_grad


def example_spec(name: str, layers: LayerMap) -> str:
    """A valid spec of every strategy that needs an argument."""
    first_tensor = next(iter(layers.block_of_tensor()))
    examples = {"layers": "layers:1", "tensors": f"tensors:{first_tensor}", "auto": "auto:gradient:budget=2"}
    return examples.get(name, name)


def test_the_registry_holds_every_strategy_and_refuses_a_duplicate():
    assert {"full", "head_only", "lower_half", "alternate", "top_k", "depth", "layers", "tensors", "attention",
            "ffn", "norm", "bias", "lora", "auto", "auto_rgn"} <= set(REGISTRY)
    with pytest.raises(ValueError, match="registered twice"):
        register("full")(lambda layers: Plan())


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("factory", [tiny_classifier, tiny_gpt2, tiny_llama])
def test_every_registered_strategy_resolves_round_trips_and_reloads(name, factory):
    """Every plan reloads twice over: from its JSON (plan.json) and from its spec (config.yaml)."""
    model = factory()
    layers = LayerMap.from_model(model)
    spec = example_spec(name, layers)
    context = ResolveContext(model=model, sample=toy_batches(num_labels=3))
    if REGISTRY[name].needs_context and factory is not tiny_classifier:
        with pytest.raises(FreezetuneError, match="classifier"):  # scorers read a classification head
            resolve(spec, layers, context)
        return
    plan = resolve(spec, layers, context)
    if REGISTRY[name].schedule:  # a schedule reloads from its spec, and every plan it gives is valid
        assert resolve(spec, layers) == plan
        for step in (0, 1, 7, 40):
            assert plan.plan_at(step, step // 5, {"last_loss": 1.0}).validate(layers).head
        return
    assert Plan.from_json(plan.to_json()) == plan
    assert hash(plan) == hash(Plan.from_json(plan.to_json()))
    assert plan.spec == spec
    assert resolve(plan.spec, layers, ResolveContext(model=model, sample=toy_batches(num_labels=3))) == plan
    assert "total" in plan.describe(layers)
    assert needs_context(spec) == REGISTRY[name].needs_context


def test_lr_decay_gives_discriminative_multipliers():
    layers = LayerMap.from_model(tiny_classifier())
    plan = resolve("lower_half:lr_decay=2.6", layers)
    assert plan.lr_multiplier("block.3") == 1.0
    assert plan.lr_multiplier("block.2") == pytest.approx(1 / 2.6)
    assert plan.lr_multiplier("head") == 1.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nonsense", "unknown strategy 'nonsense'; known: alternate, attention"),
        ("top_k:k", "needs a key|should be int"),
        ("top_k:2:3", "only the first item may be a bare value"),
        ("top_k:k=two", "should be int"),
        ("top_k:9", "0 <= k <= 4"),
        ("layers:0,7", "block 7 is out of range: this model has blocks 0..3"),
        ("layers:3-1", "runs backwards"),
        ("layers:0;1", "not a block index"),
        ("head_only:2", "takes no value"),
        ("top_k:depth=2", "has no option 'depth'"),
        ("layers:1:modules=mlp", "unknown module filter 'mlp'"),
        ("Top K", "not a strategy name"),
        ("top_k::k=2", "empty item"),
        ("", "empty strategy spec"),
    ],
)
def test_bad_specs_fail_with_one_clear_line(spec, message):
    layers = LayerMap.from_model(tiny_classifier())
    with pytest.raises(FreezetuneError, match=message) as info:
        resolve(spec, layers)
    assert "\n" not in str(info.value)


@given(st.lists(st.integers(0, 40), min_size=1, max_size=8))
def test_block_lists_round_trip(blocks):
    text = ",".join(str(b) for b in blocks)
    assert parse_blocks(text) == tuple(sorted(set(blocks)))


def test_spec_grammar_parts():
    parsed = parse_spec("layers:0,3,10-12:modules=attention+norm:head=false")
    assert parsed.name == "layers" and parsed.positional == "0,3,10-12"
    assert parsed.options == {"modules": "attention+norm", "head": "false"}
    assert parse_blocks("0,3,10-12") == (0, 3, 10, 11, 12)


def test_listing_documents_every_strategy():
    text = listing()
    for name in REGISTRY:
        assert name in text
    assert "lr_decay" in text and "bare value" in text
