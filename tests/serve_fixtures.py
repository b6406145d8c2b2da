"""Checkpoints of tiny models for the server's tests, written once per session."""

from __future__ import annotations

import pytest

from serve_checkpoints import write_checkpoint, write_lm_checkpoint

# name -> (strategy, options): different frozen depths, a LoRA task, one that trains the embeddings
CLASSIFIERS = {
    "k1": ("top_k:1", {}),  # shares blocks 0..2
    "k2": ("top_k:2", {}),  # shares blocks 0..1
    "lora": ("lora:r=4:blocks=2,3", {}),  # shares blocks 0..1
    "emb": ("top_k:1:embeddings=true", {}),  # shares nothing
    "probe": ("head_only", {}),  # shares every block
    "cls": ("top_k:1", {"pooling": "cls"}),
    "pair": ("top_k:2", {"pair": True, "labels": ["no", "yes"]}),
}


@pytest.fixture(scope="session")
def checkpoints(tiny_model_dir, tmp_path_factory):
    """name -> checkpoint folder, on the tiny BERT with the MiniLM tokenizer."""
    root = tmp_path_factory.mktemp("serve-checkpoints")
    out = {}
    for seed, (name, (strategy, options)) in enumerate(CLASSIFIERS.items()):
        write_checkpoint(root / name, tiny_model_dir, strategy, seed=seed, **options)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def lm_checkpoints(tiny_decoder_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-lm")
    write_lm_checkpoint(root / "chat", tiny_decoder_dir, "top_k:2", seed=1)
    write_lm_checkpoint(root / "lmlora", tiny_decoder_dir, "lora:r=4:blocks=3", seed=2)
    return {"chat": root / "chat", "lmlora": root / "lmlora"}


@pytest.fixture(scope="session")
def bases(checkpoints, lm_checkpoints):
    from freezetune.serve.loading import load_bases

    specs = [f"{n}={p}" for n, p in {**checkpoints, **lm_checkpoints}.items()]
    return load_bases(specs)


@pytest.fixture(scope="session")
def encoder_base(bases):
    return next(b for b in bases if b.kind == "classification")


@pytest.fixture(scope="session")
def decoder_base(bases):
    return next(b for b in bases if b.kind == "causal-lm")
