"""The shared trunk: predictions equal `freezetune predict`, the base's blocks run once, tensors are shared."""

import pandas as pd
import pytest
import torch

from freezetune.io.checkpoint import base_fingerprint
from freezetune.runs.predict import predict_file
from freezetune.serve.trunk import Batch, classify

TEXTS = ["a great film", "an awful and boring film that goes on and on and on", "ok", "the plot was fun"]
PAIRS = ["yes", "not at all, it was bad", "fine", "good story"]
SINGLE = ["k1", "k2", "lora", "emb", "probe", "cls"]
# Same weights, same float32 ops; only the padded width of a batch differs from predict's (a
# padded key is masked to exactly zero weight), so the sums differ by rounding alone: a few
# float32 epsilons (1.2e-7) on probabilities below 1.
PROB_TOL = 1e-5


def rows_of(base, texts, pairs=None):
    encoded = base.tokenizer(texts, pairs)
    types = encoded.get("token_type_ids")
    return [(ids, types[i] if types is not None else None) for i, ids in enumerate(encoded["input_ids"])]


@pytest.fixture(scope="module")
def predicted(checkpoints, tmp_path_factory):
    """What `freezetune predict` writes for TEXTS (and PAIRS), per checkpoint."""
    folder = tmp_path_factory.mktemp("predict")
    data = folder / "rows.csv"
    pd.DataFrame({"text": TEXTS, "pair": PAIRS}).to_csv(data, index=False)
    out = {}
    for name, path in checkpoints.items():
        frame = pd.read_csv(predict_file(path, data, output_path=folder / f"{name}.csv"))
        out[name] = frame
    return out


def test_fan_out_equals_predict_for_every_kind_of_task(encoder_base, predicted):
    batch = Batch.collate(rows_of(encoder_base, TEXTS), {n: [0, 1, 2, 3] for n in SINGLE},
                          encoder_base.tokenizer.pad_token_id)
    probs = classify(encoder_base, batch)
    for name in SINGLE:
        task = encoder_base.tasks[name]
        frame = predicted[name]
        expected = torch.tensor(frame[[f"prob_{label}" for label in task.labels]].to_numpy(), dtype=torch.float32)
        assert torch.allclose(probs[name], expected, atol=PROB_TOL, rtol=0), name
        assert [task.labels[i] for i in probs[name].argmax(-1).tolist()] == frame["prediction"].tolist(), name


def test_pair_task_equals_predict(encoder_base, predicted):
    batch = Batch.collate(rows_of(encoder_base, TEXTS, PAIRS), {"pair": [0, 1, 2, 3]},
                          encoder_base.tokenizer.pad_token_id)
    expected = torch.tensor(predicted["pair"][["prob_no", "prob_yes"]].to_numpy(), dtype=torch.float32)
    assert torch.allclose(classify(encoder_base, batch)["pair"], expected, atol=PROB_TOL, rtol=0)


def test_tasks_see_only_their_rows_in_a_mixed_batch(encoder_base):
    rows = rows_of(encoder_base, TEXTS)
    together = classify(encoder_base, Batch.collate(rows, {"k1": [0, 2], "k2": [1, 3], "emb": [3]}, 0))
    for name, wanted in {"k1": [0, 2], "k2": [1, 3], "emb": [3]}.items():
        alone = classify(encoder_base, Batch.collate([rows[i] for i in wanted], {name: list(range(len(wanted)))}, 0))
        assert torch.allclose(together[name], alone[name], atol=PROB_TOL, rtol=0), name


def calls(modules):
    counts = [0] * len(modules)
    handles = [m.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
               for i, m in enumerate(modules)]
    return counts, handles


def test_the_trunk_runs_once_and_each_task_only_its_own_blocks(encoder_base):
    tasks = ["k1", "k2", "lora", "emb"]
    base_counts, handles = calls(list(encoder_base.layers.blocks))
    own = {}
    for name in tasks:
        own[name], more = calls(list(encoder_base.tasks[name].layers.blocks))
        handles += more
    try:
        classify(encoder_base, Batch.collate(rows_of(encoder_base, TEXTS), {n: [0, 1, 2, 3] for n in tasks}, 0))
    finally:
        for handle in handles:
            handle.remove()
    # The deepest boundary asked for is 3 (k1): the base runs blocks 0..2 once, for every task.
    assert base_counts == [1, 1, 1, 0]
    assert own["k1"] == [0, 0, 0, 1]
    assert own["k2"] == [0, 0, 1, 1]
    assert own["lora"] == [0, 0, 1, 1]  # nothing below its first adapted block is its own
    assert own["emb"] == [1, 1, 1, 1]  # trained embeddings: shares nothing


def test_depths_follow_what_trained(encoder_base):
    depths = {name: task.depth for name, task in encoder_base.tasks.items()}
    assert depths == {"k1": 3, "k2": 2, "lora": 2, "emb": 0, "probe": 4, "cls": 3, "pair": 2}


def test_tasks_share_the_base_tensors_and_own_only_theirs(encoder_base):
    base = dict(encoder_base.model.named_parameters())
    for name, task in encoder_base.tasks.items():
        params = dict(task.model.named_parameters())
        shared = (["embeddings"] if task.depth else []) + [f"block.{i}" for i in range(task.depth)]
        for unit in shared:
            for pname in task.layers.units[unit]:
                assert params[pname] is base[pname.replace(".base_layer.", ".")], (name, pname)
    lora = dict(encoder_base.tasks["lora"].model.named_parameters())
    adapted = "backbone.encoder.layer.3.attention.self.query"
    assert lora[f"{adapted}.base_layer.weight"] is base[f"{adapted}.weight"]  # the adapter wraps the base's weight
    k1 = encoder_base.tasks["k1"]
    block3 = sum(p.numel() * 4 for p in encoder_base.layers.blocks[3].parameters())
    head = sum(p.numel() * 4 for p in k1.model.classifier.parameters())
    assert k1.own_bytes == block3 + head
    # the base itself never changed: its weights still hash to the fingerprint every checkpoint names
    assert base_fingerprint(encoder_base.model.backbone) == encoder_base.fingerprint
