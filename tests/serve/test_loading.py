"""Loading: one base per base model, and every refusal before the server listens is one clear line."""

import json
import shutil

import pytest

from freezetune.core.errors import FreezetuneError
from freezetune.io.checkpoint import META_FILE
from freezetune.serve.loading import load_bases, parse_specs


def test_one_base_copy_per_base(bases, encoder_base, decoder_base):
    assert len(bases) == 2
    assert set(encoder_base.tasks) == {"k1", "k2", "lora", "emb", "probe", "cls", "pair"}
    assert set(decoder_base.tasks) == {"chat", "lmlora"}


def test_models_describe_plan_training_and_labels(encoder_base):
    k1 = encoder_base.tasks["k1"].describe(encoder_base)
    assert k1["plan"]["spec"] == "top_k:1" and k1["trained"]["blocks"] == [3] and k1["shared_blocks"] == 3
    assert k1["labels"] == ["neg", "neu", "pos"] and k1["base_fingerprint"] == encoder_base.fingerprint
    assert encoder_base.tasks["emb"].describe(encoder_base)["trained"]["embeddings"] is True
    assert encoder_base.tasks["lora"].describe(encoder_base)["trained"]["lora"]["blocks"] == [2, 3]


def edited(checkpoint, tmp_path, **changes):
    copy = tmp_path / "edited"
    shutil.copytree(checkpoint, copy)
    meta = json.loads((copy / META_FILE).read_text())
    meta.update(changes)
    (copy / META_FILE).write_text(json.dumps(meta))
    return copy


def test_a_different_base_is_refused_naming_the_checkpoint(checkpoints, tmp_path):
    bad = edited(checkpoints["k1"], tmp_path, base_fingerprint="0123456789abcdef")
    with pytest.raises(FreezetuneError, match=r"checkpoint bad .* was trained on a different base model"):
        load_bases([f"good={checkpoints['k2']}", f"bad={bad}"])


def test_a_missing_base_is_refused_before_any_weights_load(checkpoints, tmp_path):
    bad = edited(checkpoints["k1"], tmp_path, base_model=str(tmp_path / "gone"))
    with pytest.raises(FreezetuneError, match=r"checkpoint bad: its base model cannot be found"):
        load_bases([f"bad={bad}"])


def test_names_are_checked(checkpoints):
    assert parse_specs([f"a={checkpoints['k1']}", str(checkpoints["k2"])]) == [
        ("a", str(checkpoints["k1"])), ("k2", str(checkpoints["k2"]))]
    with pytest.raises(FreezetuneError, match="given twice"):
        parse_specs([f"a={checkpoints['k1']}", f"a={checkpoints['k2']}"])
    with pytest.raises(FreezetuneError, match="must be letters"):
        parse_specs([f"a b={checkpoints['k1']}"])
    with pytest.raises(FreezetuneError, match="checkpoint x: no such checkpoint"):
        load_bases(["x=/nonexistent/folder"])
