"""The reference data retention is measured on, found offline, and a name for where it came from.

- scored sentence pairs for ``sts`` (STS-B dev by default),
- general text for ``ppl``: a given file, else WikiText-2 raw test, else the text that ships
  with the package (``reference_text/general_english.txt``),
- reference texts for ``cka`` (STS-B dev's sentences, else sentences built in here).

The shared defaults live beside the repo in ``../shared/data`` (see
``io.defaults.shared_data_dir``); a user file replaces them (``--retention-data`` /
``--reference-data``). Users have no ../shared, so perplexity always has a packaged fallback:
about 4,000 words (4,650 SmolLM2 tokens) of varied general English prose written for
freezetune and released under CC0 1.0 (public-domain dedication; see
``reference_text/README.md``). Each loader's ``*_source`` twin says which source it would use,
so that metrics.json can name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from freezetune.core.errors import FreezetuneError
from freezetune.io.defaults import shared_data_dir
from freezetune.io.tables import read_table

STS_RELATIVE_PATH = ("glue", "STS-B", "dev.tsv")
TEXT_RELATIVE_PATH = ("wikitext-2", "wiki.test.raw")
PACKAGED_TEXT_NAME = "general_english.txt"

# How metrics.json names each source (``measure(...)["source"]``).
SHARED_TEXT_SOURCE = "wikitext-2 test (../shared/data)"
PACKAGED_TEXT_SOURCE = "packaged: freezetune reference text (general_english.txt, CC0)"
SHARED_STS_SOURCE = "STS-B dev (../shared/data)"
SHARED_STS_SENTENCES_SOURCE = "STS-B dev sentences (../shared/data)"
BUILTIN_SENTENCES_SOURCE = "packaged: built-in sentences (references.BUILTIN_SENTENCES)"
IN_MEMORY_SOURCE = "given in memory"

Pairs = tuple[list[str], list[str], list[float]]

# Generic English sentences for CKA when no reference data exists (written here, not downloaded).
BUILTIN_SENTENCES: tuple[str, ...] = (
    "The sun rose slowly over the quiet village.",
    "She poured a cup of coffee and opened the newspaper.",
    "A small dog was barking at the mail carrier.",
    "The train to the city leaves every twenty minutes.",
    "He forgot his umbrella and got caught in the rain.",
    "Children were playing football in the park after school.",
    "The museum will be closed for repairs until next spring.",
    "Fresh bread smells wonderful early in the morning.",
    "The committee approved the new budget on Tuesday.",
    "Scientists discovered a new species of frog in the rainforest.",
    "My grandmother grows tomatoes and beans in her garden.",
    "The company reported higher profits than expected this quarter.",
    "A strong wind knocked down several trees during the night.",
    "Please turn off the lights when you leave the room.",
    "The river flooded the fields after days of heavy rain.",
    "They watched an old film and ate popcorn on the sofa.",
    "The doctor advised him to get more sleep and exercise.",
    "Our flight was delayed because of a technical problem.",
    "The students read a poem aloud in front of the class.",
    "The recipe calls for two eggs, flour, sugar and butter.",
    "Traffic was heavy on the highway this afternoon.",
    "The library offers free courses on computer programming.",
    "A man is playing the guitar on a street corner.",
    "The cat is sleeping on the warm windowsill.",
    "Prices of fruit and vegetables rose sharply last month.",
    "The team celebrated their victory with their fans.",
    "He painted the fence white over the weekend.",
    "The mountains were covered in snow by early November.",
    "She is learning to speak Spanish before her trip.",
    "The city council plans to build a new bridge.",
    "A woman is slicing an onion in the kitchen.",
    "The meeting has been moved to Thursday morning.",
    "Birds were singing in the trees outside my window.",
    "The novel tells the story of a family across three generations.",
    "The restaurant on the corner serves excellent soup.",
    "He repaired the old bicycle and rode it to work.",
    "The storm cut power to thousands of homes.",
    "Voters will choose a new mayor in the autumn election.",
    "The baby laughed when the puppy licked her hand.",
    "The bakery sold out of cakes before noon.",
    "An orchestra performed a concert in the town square.",
    "The price of the house was higher than they could afford.",
    "She wrote a letter to her friend who lives abroad.",
    "The engineers tested the engine for several hours.",
    "A group of tourists took photographs of the cathedral.",
    "The farmer milks the cows twice a day.",
    "The software update fixed several security problems.",
    "He was nervous before his first job interview.",
    "The lake was calm and reflected the evening sky.",
    "Two men are sitting on a bench and talking.",
)


def default_sts_path() -> Path | None:
    """STS-B dev beside the repo (``../shared/data/glue/STS-B/dev.tsv``), or None."""
    root = shared_data_dir()
    path = root.joinpath(*STS_RELATIVE_PATH) if root is not None else None
    return path if path is not None and path.is_file() else None


def default_text_path() -> Path | None:
    """WikiText-2 raw test beside the repo (``../shared/data/wikitext-2/wiki.test.raw``), or None."""
    root = shared_data_dir()
    path = root.joinpath(*TEXT_RELATIVE_PATH) if root is not None else None
    return path if path is not None and path.is_file() else None


def load_sts_pairs(path: str | Path | None = None, limit: int | None = None) -> Pairs:
    """Scored sentence pairs ``(sentence1, sentence2, score)``: STS-B dev by default.

    A user file is a CSV / TSV / JSONL table with columns ``sentence1``, ``sentence2`` and
    ``score`` (TSV is read with quoting off, which STS-B needs). ``limit`` keeps that many
    evenly spaced rows (every genre represented). Rows with a missing sentence or score are dropped.
    """
    if path is None:
        path = default_sts_path()
        if path is None:
            raise FreezetuneError(
                "no STS-B data found (../shared/data/glue/STS-B/dev.tsv): "
                "--reference-data must point to scored pairs (columns sentence1, sentence2, score)"
            )
    path = Path(path)
    if not path.is_file():
        raise FreezetuneError(
            f"no such file: {path}; --reference-data must point to scored pairs (columns sentence1, sentence2, score)"
        )
    frame = read_table(path)
    missing = [c for c in ("sentence1", "sentence2", "score") if c not in frame.columns]
    if missing:
        raise FreezetuneError(
            f"{path} lacks column(s) {', '.join(missing)}: --reference-data must point to scored pairs "
            f"(columns sentence1, sentence2, score); it has {', '.join(map(str, frame.columns))}"
        )
    frame = frame[["sentence1", "sentence2", "score"]].dropna()
    try:
        scores = [float(s) for s in frame["score"]]
    except (TypeError, ValueError):
        raise FreezetuneError(f"{path}: column score must hold numbers") from None
    first = [str(s) for s in frame["sentence1"]]
    second = [str(s) for s in frame["sentence2"]]
    if limit is not None:
        first, second, scores = spread(first, limit), spread(second, limit), spread(scores, limit)
    if len(scores) < 2:
        raise FreezetuneError(f"{path}: need at least 2 scored pairs, found {len(scores)}")
    return first, second, scores


def file_source(path: str | Path) -> str:
    """How a user's file is named as a source: its absolute path, so a run records what it read."""
    return f"file: {Path(path).resolve()}"


def packaged_text() -> str:
    """The general English text that ships with freezetune (CC0; see reference_text/README.md)."""
    resource = files(__package__).joinpath("reference_text", PACKAGED_TEXT_NAME)
    return resource.read_text(encoding="utf-8")


def reference_text(path: str | Path | None = None) -> tuple[str, str]:
    """General text for perplexity and its source, in this order: ``path`` when given; else
    WikiText-2 raw test from ../shared/data when present; else the packaged text."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FreezetuneError(f"no such file: {path}; --retention-data must point to a plain-text file")
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise FreezetuneError(f"{path} holds no text")
        return text, file_source(path)
    shared = default_text_path()
    if shared is not None:
        return shared.read_text(encoding="utf-8", errors="replace"), SHARED_TEXT_SOURCE
    return packaged_text(), PACKAGED_TEXT_SOURCE


def load_reference_text(path: str | Path | None = None) -> str:
    """General text for perplexity (see :func:`reference_text`, which also names its source)."""
    return reference_text(path)[0]


def sts_source(path: str | Path | None = None) -> str:
    """The source :func:`load_sts_pairs` reads for ``path``."""
    return SHARED_STS_SOURCE if path is None else file_source(path)


def texts_source(source: str | Path | Sequence[str] | None = None) -> str:
    """The source :func:`load_reference_texts` reads for ``source``."""
    if source is None:
        return SHARED_STS_SENTENCES_SOURCE if default_sts_path() else BUILTIN_SENTENCES_SOURCE
    if isinstance(source, (str, Path)):
        return file_source(source)
    return IN_MEMORY_SOURCE


def load_reference_texts(source: str | Path | Sequence[str] | None = None, limit: int | None = None) -> list[str]:
    """Texts for CKA: a given list; or a file (scored pairs, a table with a ``text`` column, or
    plain text, one text a line); or, with none given, STS-B dev's sentences when present, else
    the built-in sentences."""
    if source is None:
        texts = _unique(sum(load_sts_pairs()[:2], [])) if default_sts_path() else list(BUILTIN_SENTENCES)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FreezetuneError(f"no such file: {path}; --reference-data must point to texts or scored pairs")
        if path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json", ".parquet"):
            frame = read_table(path)
            if {"sentence1", "sentence2"} <= set(frame.columns):
                texts = _unique([str(t) for c in ("sentence1", "sentence2") for t in frame[c].dropna()])
            elif "text" in frame.columns:
                texts = [str(t) for t in frame["text"].dropna()]
            else:
                raise FreezetuneError(f"{path}: need a text column, or sentence1 and sentence2")
        else:
            texts = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
            texts = [t for t in texts if t]
    else:
        texts = [str(t) for t in source]
    texts = spread(texts, limit)
    if len(texts) < 2:
        raise FreezetuneError(f"CKA needs at least 2 reference texts, found {len(texts)}")
    return texts


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def spread(items: Sequence, limit: int | None) -> list:
    """``limit`` evenly spaced items, first included, in order (all when limit is None or large).

    STS-B dev is sorted by genre (captions, then news, then forums): the first rows alone
    would be an easy, unrepresentative sample.
    """
    items = list(items)
    if limit is None or limit >= len(items):
        return items
    if limit < 1:
        raise FreezetuneError(f"limit must be at least 1, not {limit}")
    return [items[i * len(items) // limit] for i in range(limit)]
