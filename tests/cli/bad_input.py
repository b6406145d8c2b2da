"""What the bad-input tests share: run the command in-process and check its one error line."""

import re

from conftest import FAST
from freezetune.cli.main import main


def train_args(model_dir, data, output, *extra):
    return ["train", "--model", str(model_dir), "--data", str(data), "--output", str(output), *FAST, *extra]


def refused(args, capsys, pattern):
    """Run ``freezetune ARGS``: exit code 2, nothing on stdout, one error line on stderr matching ``pattern``."""
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse errors exit, as a console script does
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("freezetune: error: "), captured.err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path
