"""A sweep scores a measuring strategy once per seed and trains exactly the plan it scored."""

import json

from conftest import FAST
from freezetune.cli.main import main
from freezetune.scoring import auto as auto_module


def test_auto_is_scored_once_per_seed_and_each_run_trains_the_scored_plan(tiny_model_dir, sentiment_csv, tmp_path,
                                                                         monkeypatch):
    scored = []
    original = auto_module.score

    def counting(model, batches, scorer, **kw):
        result = original(model, batches, scorer, **kw)
        scored.append(result)
        return result

    monkeypatch.setattr(auto_module, "score", counting)  # semantic: 58 rows would support no block for gradient
    out = tmp_path / "cmp"
    args = ["compare", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--strategy", "auto:semantic:budget=1",
            "--strategy", "head_only", "--seeds", "2", "--lr-grid", "auto", "--output", str(out), *FAST]
    assert main(args) == 0
    assert len(scored) == 2  # one per seed: not once for rates and again in every run
    runs = [p for p in (out / "runs").iterdir() if p.name.startswith("auto")]
    assert len(runs) == 6  # 2 seeds x 3 rates
    by_seed: dict[int, set] = {}
    for run in runs:
        seed = json.loads((run / "metrics.json").read_text())["plan"]
        config = (run / "config.yaml").read_text()
        by_seed.setdefault("seed: 1" in config, set()).add(tuple(seed["blocks"]))
        assert (run / "scores.json").is_file() and "chosen: blocks" in (run / "selection.txt").read_text()
    # every run of a seed trains that seed's one scored plan, the block its selection names
    assert all(len(plans) == 1 for plans in by_seed.values())
    for run in runs:
        chosen = json.loads((run / "plan.json").read_text())["blocks"]
        assert f"chosen: blocks {chosen[0]}" in (run / "selection.txt").read_text()
    # the compare table names each seed's choice, and says why below it
    table = (out / "results.txt").read_text()
    assert "chosen plan per seed" in table and "auto:semantic:budget=1, seed 1:" in table
    row = next(r for r in json.loads((out / "results.json").read_text())["rows"] if r["strategy"].startswith("auto"))
    assert row["chosen"].count("blocks ") == 2 and set(row["selections"]) == {"0", "1"}


def test_train_races_on_its_own_data_and_explains_the_race(tiny_model_dir, sentiment_csv, tmp_path):
    out = tmp_path / "race"
    args = ["train", "--model", tiny_model_dir, "--data", str(sentiment_csv), "--strategy", "auto:method=race",
            "--output", str(out), *FAST]
    assert main(args) == 0
    race = json.loads((out / "race.json").read_text())
    assert len(race["candidates"]) == 5  # the tiny model's 4 blocks: depth 0..4
    chosen = next(c for c in race["candidates"] if c["name"] == race["chosen"])
    assert json.loads((out / "plan.json").read_text())["blocks"] == list(range(int(chosen["spec"][6:]), 4))
    assert "<- chosen" in (out / "selection.txt").read_text()
    costs = json.loads((out / "metrics.json").read_text())["costs"]
    assert costs["scoring_s"] == race["seconds"]


def test_a_run_hash_names_paths_relative_to_the_working_folder(tmp_path, monkeypatch):
    from dataclasses import replace

    from freezetune.core.config import DataConfig
    from freezetune.runs.spec import RunSpec
    from freezetune.runs.sweep import run_hash

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.csv").write_text("text,label\na,x\n")
    relative = RunSpec(data=DataConfig(data="train.csv"))
    absolute = replace(relative, data=DataConfig(data=str(tmp_path / "train.csv")))
    assert run_hash(relative) == run_hash(absolute)  # config.yaml saves paths absolute; the store keeps its hashes
    assert run_hash(relative) != run_hash(replace(relative, data=DataConfig(data="other.csv")))


def test_an_option_at_its_default_stays_out_of_a_run_hash():
    from dataclasses import replace

    from freezetune.core.config import TrainConfig
    from freezetune.runs.spec import RunSpec
    from freezetune.runs.sweep import run_hash

    spec = RunSpec(strategy="full", train=TrainConfig(epochs=3, lr=1e-4))
    assert run_hash(spec) == run_hash(replace(spec, train=replace(spec.train, epochs=TrainConfig().epochs)))
    assert run_hash(spec) != run_hash(replace(spec, train=replace(spec.train, epochs=4)))
    assert run_hash(spec) == run_hash(replace(spec, train=replace(spec.train, cache_dir="/elsewhere")))
