"""The house rules: layers that only import downwards, small files, top-level imports, lint, an instant CLI."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "freezetune"
BIN = Path(sys.executable).parent
HEAVY = ("torch", "transformers", "datasets", "sklearn", "pandas", "peft")


def sources():
    return sorted(PACKAGE.rglob("*.py"))


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=cwd, env={"PYTHONPATH": str(pythonpath), "PATH": str(BIN)},
                          capture_output=True, text=True)


def test_the_layers_contract_holds():
    result = lint_imports(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_layers_contract_fails_on_an_upward_import(tmp_path):
    copy = tmp_path / "src" / "freezetune"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "core" / "errors.py", "a") as handle:
        handle.write("\nfrom freezetune.training.finetuner import Finetuner  # noqa: E402,F401\n")
    result = lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "freezetune.core.errors -> freezetune.training.finetuner" in result.stdout


def test_ruff_finds_nothing():
    result = subprocess.run([str(BIN / "ruff"), "check", "src", "tests", "bench"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_no_source_file_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in sources() if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_our_own_imports_sit_at_the_top_of_every_file():
    """Only heavy third-party imports may be lazy; the package face's __getattr__ is the one exception."""
    lazy = []
    for path in sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    module = getattr(inner, "module", None) if isinstance(inner, ast.ImportFrom) else None
                    names = [a.name for a in inner.names] if isinstance(inner, ast.Import) else [module or ""]
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and any(
                            n == "freezetune" or n.startswith("freezetune.") for n in names):
                        lazy.append(f"{path.relative_to(PACKAGE)}:{inner.lineno}")
    assert not lazy


def test_the_library_never_imports_the_cli():
    offenders = [str(p.relative_to(PACKAGE)) for p in sources()
                 if "cli" not in p.relative_to(PACKAGE).parts and "freezetune.cli" in p.read_text()
                 and p.name != "__main__.py"]
    assert not offenders


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"], ["compare", "--help"],
                                  ["score", "--help"], ["predict", "--help"], ["export", "--help"],
                                  ["retention", "--help"], ["inspect", "--help"], ["strategies", "--help"]])
def test_help_and_version_import_no_heavy_library(argv):
    code = (
        "import sys\n"
        "from freezetune.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    if argv == ["--version"]:
        assert result.stdout.startswith("freezetune 0.1.0")


def test_the_cli_scorer_names_are_the_scoring_layers():
    from freezetune.cli.score import SCORER_NAMES
    from freezetune.scoring.scorers import SCORERS

    assert SCORER_NAMES == tuple(SCORERS)


def test_the_public_face_is_lazy_and_complete():
    import freezetune

    code = "import sys, freezetune; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    for name in freezetune.__all__:
        assert getattr(freezetune, name) is not None
    assert {"auto", "auto_rgn", "full"} <= set(freezetune.STRATEGIES)
