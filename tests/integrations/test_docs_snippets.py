"""Every recipe of docs/integrations.md, run as written on a tiny Llama saved where it says ``path/to/model``."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from test_plan_exports import AXOLOTL_KEYS

from freezetune.cli.main import main

DOC = Path(__file__).parents[2] / "docs" / "integrations.md"
TEXT = DOC.read_text()
PYTHON = re.findall(r"```python\n(.*?)```", TEXT, re.S)
SHELL = [line for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S) for line in block.splitlines() if line]


def test_the_page_has_the_recipes_the_tests_run():
    assert len(PYTHON) == 6 and len(SHELL) == 3


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_decoder_dir):
    """A folder with the plan commands already run (the Python recipes read plan/ and lora-plan/)."""
    monkeypatch.chdir(tmp_path)
    rows = ["review the film was great . sentiment ? positive", "review the plot was dull . sentiment ? negative"]
    Path("train.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in rows * 12))
    for line in SHELL:
        args = shlex.split(line.replace("path/to/model", tiny_decoder_dir))
        assert args[:2] == ["freezetune", "plan"]
        assert main(args[1:]) == 0, line
    return tiny_decoder_dir


@pytest.mark.parametrize("index", range(6))
def test_python_recipe_runs(workdir, index):
    code = PYTHON[index].replace("path/to/model", workdir)
    exec(compile(code, f"{DOC.name}#python-{index}", "exec"), {"__name__": "__recipe__"})


def test_the_axolotl_example_is_valid_yaml_with_axolotl_keys():
    example = next(b for b in re.findall(r"```yaml\n(.*?)```", TEXT, re.S) if "unfrozen_parameters" in b)
    keys = yaml.safe_load(example)
    assert set(keys) <= AXOLOTL_KEYS and all(p.startswith("^model.layers.") or p.endswith("$")
                                             for p in keys["unfrozen_parameters"])
