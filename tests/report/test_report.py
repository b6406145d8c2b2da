"""compare ends with a report built from the finished runs; `freezetune report` rebuilds it without training."""

import json
import re

from freezetune.cli.main import main
from freezetune.runs import sweep as sweep_module


def test_compare_writes_the_report_with_every_plan_at_every_size(finished_comparison, capsys):
    out = finished_comparison
    markdown = (out / "report.md").read_text()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert sorted((r["strategy"], str(r["train_size"])) for r in rows) == sorted(
        (s, n) for s in ("full", "head_only", "top_k:2") for n in ("24", "None"))
    table = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert len(table) == 6
    for row in rows:  # every plan's test accuracy appears as mean ± std in its own line
        mean = f"{row['accuracy']:.3f} ± {row['accuracy_std']:.3f}"
        assert any(line.startswith(f"| {row['strategy']} |") and mean in line for line in table)
    # integers as integers, sizes in MiB or GiB
    full = next(line for line in table if line.startswith("| full |"))
    assert re.search(r"\| \d{1,3}(,\d{3})* \|", full) and ("MiB" in full or "GiB" in full)
    assert "## Recommendation (58 training rows)" in markdown  # 64 rows less a validation split of 6
    assert "**best accuracy:" in markdown and "**cheapest (time waited: training + cache build + scoring):" in markdown
    assert "**Low-data regime.**" in markdown and "22 rows:" in markdown
    for name in ("metric_vs_time", "learning_curves", "training_curves"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 5_000
        assert f"(plots/{name}.png)" in markdown
    assert not (out / "plots" / "metric_vs_retention.png").exists()  # --retention none: nothing to plot
    assert "| retention |" not in markdown  # nor a column of dashes
    html = (out / "report.html").read_text()
    assert html.count("<img ") == markdown.count("![") and "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)  # self-contained: nothing to fetch


def test_report_rebuilds_from_finished_runs_without_training(finished_comparison, monkeypatch, capsys):
    (finished_comparison / "report.html").unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("report must not train")

    monkeypatch.setattr(sweep_module, "run_training", no_training)
    assert main(["report", str(finished_comparison)]) == 0
    assert (finished_comparison / "report.html").is_file()
    assert capsys.readouterr().out.splitlines()[0] == f"report: {finished_comparison / 'report.html'}"


def test_report_of_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"freezetune: error: {tmp_path} holds no results.json; run `freezetune compare --output "
                   f"{tmp_path}` first"]


def test_validation_numbers_are_flagged_in_the_first_lines(finished_comparison, tmp_path):
    results = json.loads((finished_comparison / "results.json").read_text())
    for row in results["rows"]:
        row["reported_split"] = "validation"
    copy = tmp_path / "val"
    copy.mkdir()
    (copy / "results.json").write_text(json.dumps(results))
    assert main(["report", str(copy)]) == 0
    first = (copy / "report.md").read_text().splitlines()[2]
    assert first.startswith("**These are validation numbers**")
