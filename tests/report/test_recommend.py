"""The recommendation follows the numbers: direction of the metric, paired seed noise, the Pareto front, the regime."""

from pathlib import Path

import pytest

from freezetune.report.document import recommendation, summary_table
from freezetune.report.load import Comparison, Plan, Run
from freezetune.report.recommend import Criterion, best, compromise, criteria, pareto_front, regime, regime_sentence
from freezetune.report.stats import learned_nothing, margin, measure, metric


def plan(strategy, scores, *, rows=1000, metric_name="accuracy", retention=None, time=10.0, ood=None):
    runs = [Run(strategy=strategy, seed=seed, folder=Path("/nonexistent"), train_rows=rows,
                reported={metric_name: value}, costs={"train_time_s": time + seed},
                summary={"retention_after": retention, "task": "classification"},
                eval_sets={"reviews": {"kind": "ood", metric_name: ood[seed]}} if ood else {})
            for seed, value in enumerate(scores)]
    return Plan(strategy, None, {"strategy": strategy}, runs)


def comparison(plans, headline="accuracy"):
    return Comparison(Path("/nonexistent"), plans, headline, "test", "classification", {})


def test_a_margin_is_noise_when_the_paired_differences_spread_more_than_it():
    steady = measure(plan("a", [0.80, 0.81, 0.82]), metric("accuracy"))
    close = measure(plan("b", [0.79, 0.80, 0.81]), metric("accuracy"))  # 0.01 behind at every seed
    noisy = measure(plan("c", [0.70, 0.84, 0.83]), metric("accuracy"))
    assert margin(steady, close).value == pytest.approx(0.01)
    assert margin(steady, close).spread == pytest.approx(0.0) and margin(steady, close).within_noise is False
    assert margin(steady, noisy).within_noise is True  # 0.02 ahead, but the paired differences spread 0.06
    assert margin(measure(plan("d", [0.8]), metric("accuracy")), measure(plan("e", [0.7]), metric("accuracy"))
                  ).within_noise is None  # one seed: cannot tell


def test_lower_is_better_metrics_rank_the_right_way_round():
    plans = [plan("full", [12.0, 12.5], metric_name="perplexity"), plan("lora", [10.0, 10.2], metric_name="perplexity")]
    found = criteria(comparison(plans, headline="perplexity"))
    pick = best(plans, found[0])
    assert pick.plan.strategy == "lora" and pick.runner_up.strategy == "full"
    assert pick.margin.value == pytest.approx(2.15)  # ahead by 2.15 perplexity, reported as a positive margin


def test_each_criterion_names_its_winner_with_the_runner_up():
    plans = [plan("full", [0.90, 0.91], retention=0.60, time=100, ood=[0.70, 0.71]),
             plan("lower_half", [0.89, 0.90], retention=0.75, time=50, ood=[0.74, 0.75]),
             plan("head_only", [0.80, 0.81], retention=0.87, time=5, ood=[0.60, 0.61])]
    found = {c.key: c for c in criteria(comparison(plans))}
    assert set(found) == {"metric", "retention", "cost", "ood"}
    winners = {key: best(plans, c).plan.strategy for key, c in found.items()}
    assert winners == {"metric": "full", "retention": "head_only", "cost": "head_only", "ood": "lower_half"}
    assert "runner-up lower_half" in best(plans, found["metric"]).sentence()


def test_the_pareto_compromise_gives_up_least_anywhere():
    plans = [plan("full", [0.90, 0.91], retention=0.60, time=100),
             plan("lower_half", [0.89, 0.90], retention=0.75, time=50),
             plan("head_only", [0.80, 0.81], retention=0.87, time=5),
             plan("worse", [0.85, 0.86], retention=0.55, time=120)]  # beaten by full everywhere
    chosen = [c for c in criteria(comparison(plans)) if c.key in ("metric", "retention", "cost")]
    assert {p.strategy for p in pareto_front(plans, chosen)} == {"full", "lower_half", "head_only"}
    pick, scaled = compromise(plans, chosen)
    assert pick.strategy == "lower_half"
    # its worst criterion, time (mean 50.5 s between 5.5 and 120.5), still beats the others' worst
    assert scaled == pytest.approx({"metric": 0.9, "retention": 0.625, "cost": 70 / 115})


def test_the_regime_says_where_freezing_wins_along_the_learning_curve():
    plans = [plan("full", [0.60, 0.62, 0.61], rows=100), plan("head_only", [0.70, 0.71, 0.72], rows=100),
             plan("full", [0.90, 0.91, 0.92], rows=2000), plan("head_only", [0.80, 0.81, 0.82], rows=2000),
             plan("lora:r=8", [0.95, 0.95, 0.95], rows=2000)]  # LoRA is not freezing
    points = regime(comparison(plans))
    assert [(p.train_rows, p.frozen.strategy, round(p.margin.value, 3)) for p in points] == [
        (100, "head_only", 0.1), (2000, "head_only", -0.1)]
    text = regime_sentence(points)
    assert text.startswith("At your data's full size you are in the regime where full fine-tuning wins")
    assert "100 rows: freezing (head_only) wins (+0.100)" in text


def test_a_criterion_nobody_measured_is_left_out():
    plans = [plan("full", [0.9]), plan("head_only", [0.8])]
    assert [c.key for c in criteria(comparison(plans))] == ["metric", "cost"]  # no retention, no OOD set
    assert best(plans, Criterion("x", "x", lambda run: None, True)) is None


def test_perplexity_retention_counts_lower_as_better_kept():
    plans = [plan("full", [0.9, 0.9], retention=40.0), plan("lower_half", [0.88, 0.88], retention=30.5)]
    for p in plans:
        for run in p.runs:
            run.summary["retention_reference"] = "ppl"
    found = {c.key: c for c in criteria(comparison(plans))}
    assert best(plans, found["retention"]).plan.strategy == "lower_half"


def idle_plan(strategy, scores, *, rows=160, baseline=0.538, n=40, time=1.0, costs=None):
    """A plan whose runs carry the majority class's score on the same n reported rows."""
    runs = [Run(strategy=strategy, seed=seed, folder=Path("/nonexistent"), train_rows=rows,
                reported={"accuracy": value, "n": n}, costs=costs or {"train_time_s": time},
                summary={"task": "classification"}, baseline={"accuracy": baseline})
            for seed, value in enumerate(scores)]
    return Plan(strategy, None, {"strategy": strategy}, runs)


def test_a_plan_within_noise_of_the_majority_class_learned_nothing_and_is_no_pick():
    # 40 rows: the sampling error of accuracy is 0.5 / sqrt(40) = 0.079 above the majority's 0.538
    plans = [idle_plan("head_only", [0.55, 0.56], time=0.1), idle_plan("full", [0.70, 0.72], time=30.0)]
    assert learned_nothing(plans[0], "accuracy") and not learned_nothing(plans[1], "accuracy")
    blocks = recommendation(comparison(plans), 160)
    text = "\n".join(blocks[1].items)
    assert "**Nothing learned: head_only**" in text
    assert "cheapest (time waited: training + cache build + scoring): full**" in text  # not the idle plan
    assert "(nothing learned)" in summary_table(comparison(plans)).rows[0][2]


def test_a_size_where_no_plan_learned_is_reported_as_such_never_as_a_tie():
    plans = [idle_plan("full", [0.538, 0.55]), idle_plan("head_only", [0.538, 0.54]),
             idle_plan("full", [0.74, 0.75], rows=640, n=160), idle_plan("head_only", [0.62, 0.63], rows=640, n=160)]
    text = regime_sentence(regime(comparison(plans)))
    assert "160 rows: nothing learned (every plan within noise of the majority class)" in text
    assert "a tie" not in text.split(";")[0] and "640 rows: full fine-tuning wins" in text
    only_idle = recommendation(comparison(plans[:2]), 160)
    assert "**Nothing learned by any plan**" in "\n".join(only_idle[1].items)


def test_the_cost_criterion_ranks_by_the_time_waited_cache_build_and_scoring_included():
    cached = idle_plan("head_only", [0.80], costs={"train_time_s": 0.1, "cache_build_s": 2.0}, baseline=0.3)
    uncached = idle_plan("top_k:2", [0.80], costs={"train_time_s": 1.5}, baseline=0.3)
    chosen = next(c for c in criteria(comparison([cached, uncached])) if c.key == "cost")
    assert best([cached, uncached], chosen).plan.strategy == "top_k:2"  # 1.5 s against 0.1 + 2.0 s
    table = summary_table(comparison([cached]))
    row = dict(zip(table.headers, table.rows[0]))
    assert row["time waited"] == "2.10 s" and row["train / cache / scoring"] == "0.100 s / 2.00 s / 0.000 s"


def test_a_freezing_plan_that_learned_nothing_is_not_a_tie_with_full_fine_tuning_that_did():
    plans = [idle_plan("full", [1.0, 1.0], n=64), idle_plan("top_k:2", [1.0, 0.5], n=64)]  # 0.75 ± 0.35: noise
    text = regime_sentence(regime(comparison(plans)))
    assert text.startswith("At your data's full size you are in the regime where full fine-tuning wins")
    assert "full fine-tuning wins (top_k:2 learned nothing)" in text and "tie" not in text
