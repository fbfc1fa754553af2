"""Recipes: YAML files that say what to train on, with what, for how long.

A recipe has four sections, each checked key by key (a typo is an error that names the closest
known key)::

    seed: 0
    output_dir: runs/quickstart
    hypernetwork: {base_model: minilm, lora_rank: 8, ...}   # HyperNetConfig fields
    training: {max_steps: 600, batch_size: 16, ...}         # TrainingConfig fields
    tasks:                                                  # one entry per task, see TaskEntry
      - builtin: rt_sentiment
      - folder: ../shared/data/glue_sst2
      - {name: reviews, dataset: csv, data_files: {train: r.csv}, columns: {review: sentence},
         task_type: sequence_classification, labels: [neg, pos], validation_fraction: 0.1}
"""

from __future__ import annotations

import copy
import difflib
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union

import yaml

from .config import HyperNetConfig
from .data import Task, TaskSpec, group_problem, load_dataset_task, load_task_folder
from .errors import HyperAdaptError

# The transformers schedulers that need nothing beyond warmup and total steps (the others need a
# metric or extra arguments).
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
# accelerate's trackers (each needs its own package installed).
TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "trackio", "swanlab")


BASE_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class TrainingConfig:
    """How the hypernetwork is trained.

    Example:
        >>> TrainingConfig(max_steps=100).warmup_steps
        6
    """

    max_steps: int = field(default=600, metadata={"help": "Optimiser steps in all."})
    batch_size: int = field(default=16, metadata={"help": "Examples per step; every batch holds one task."})
    max_length: int = field(default=128, metadata={"help": "Tokens per input, longer ones are truncated."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.06, metadata={"help": "Share of steps of linear warmup."})
    lr_scheduler: str = field(default="linear", metadata={"help": "A transformers scheduler name."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    temperature: float = field(
        default=2.0,
        metadata={"help": "Task sampling: p(task) ~ size^(1/T); 1 = proportional, large = uniform."},
    )
    eval_every: int = field(
        default=200, metadata={"help": "Evaluate on validation every N steps (0: at the end)."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size for evaluation."})
    max_eval_examples: int = field(
        default=500, metadata={"help": "Validation examples per task per evaluation."}
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimiser step."})
    mixed_precision: str = field(default="no", metadata={"help": "'no', 'bf16' or 'fp16' (GPU only)."})
    base_dtype: str = field(
        default="float32",
        metadata={
            "help": "Precision of the frozen base model's weights while training: 'float32', 'bfloat16' "
            "(half the memory; the generated adapters stay float32) or 'float16' (GPU only)."
        },
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "Keep only each adapted block's inputs and recompute its activations in the backward "
            "pass: less memory, about one more forward pass of compute per step."
        },
    )
    log_every: int = field(default=20, metadata={"help": "Log the running loss every N steps."})
    save_every: int = field(
        default=0,
        metadata={"help": "Write a resumable checkpoint every N steps and at the end (0: never)."},
    )
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept; older ones are deleted."})
    language_modelling: float = field(
        default=0.0,
        metadata={
            "help": "Share of steps that train the language embeddings by masked language modelling on "
            "the texts of each language's training tasks (needs language conditioning; 0: never)."
        },
    )
    report_to: list[str] | str = field(
        default_factory=list,
        metadata={"help": "accelerate trackers to log to, e.g. [tensorboard] (logs in OUTPUT_DIR/logs)."},
    )

    def __post_init__(self) -> None:
        for name in (
            "max_steps",
            "batch_size",
            "max_length",
            "eval_batch_size",
            "max_eval_examples",
            "gradient_accumulation_steps",
            "log_every",
            "save_total_limit",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"training.{name} must be a positive integer, got {value!r}")
        if self.max_length < 8:
            # Below that the tokenizer cannot fit a pair's special tokens and leaves inputs untruncated.
            raise ValueError(f"training.max_length must be 8 or more, got {self.max_length}")
        for name in ("eval_every", "save_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"training.{name} must be an integer >= 0, got {value!r}")
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        if not isinstance(self.report_to, list) or not all(isinstance(t, str) for t in self.report_to):
            raise ValueError(f"training.report_to must be a list of tracker names, got {self.report_to!r}")
        for tracker in self.report_to:
            if tracker not in TRACKERS:
                close = difflib.get_close_matches(tracker, TRACKERS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"use some of {', '.join(TRACKERS)}"
                raise ValueError(f"training.report_to: unknown tracker {tracker!r}; {hint}")
        for name in ("learning_rate", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"training.{name} must be a positive number, got {value!r}")
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"training.{name} must be a number >= 0, got {value!r}")
        value = self.language_modelling
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"training.language_modelling must be a share of steps in [0, 1), got {value!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"training.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.base_dtype not in BASE_DTYPES:
            close = difflib.get_close_matches(str(self.base_dtype).lower(), BASE_DTYPES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(BASE_DTYPES)}"
            raise ValueError(f"training.base_dtype {self.base_dtype!r} is not supported; {hint}")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ValueError(
                f"training.gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}"
            )
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(
                f"training.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}"
            )
        if self.lr_scheduler not in LR_SCHEDULERS:
            close = difflib.get_close_matches(str(self.lr_scheduler), LR_SCHEDULERS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(LR_SCHEDULERS)}"
            raise ValueError(f"training.lr_scheduler {self.lr_scheduler!r} is not supported; {hint}")

    @property
    def warmup_steps(self) -> int:
        return int(self.max_steps * self.warmup_ratio)


TASK_SOURCES = ("builtin", "folder", "dataset")


@dataclass
class TaskEntry:
    """One task of a recipe: where its examples come from, and what it is.

    Exactly one of ``builtin`` (a built-in task name), ``folder`` (a task folder) or ``dataset``
    (a ``datasets.load_dataset`` path such as ``csv``, ``json`` or a Hub id) is given. For a
    ``dataset`` the spec fields (``task_type``, ``text_fields``, ``labels``, ...) are given here;
    for the others they may override the task's own. ``descriptions`` adds more wordings of
    the task's description; training draws one per step. ``group`` names the task this one is in
    its language (tasks of one group share their name embedding and head).
    """

    builtin: str | None = None
    folder: str | None = None
    dataset: str | None = None
    name: str | None = None
    config_name: str | None = None
    data_files: Any = None
    revision: str | None = None
    columns: dict[str, str] | None = None
    split_names: dict[str, str] | None = None
    validation_fraction: float | None = None
    max_train: int | None = None
    task_type: str | None = None
    text_fields: list[str] | None = None
    label_field: str | None = None
    labels: list[str] | None = None
    label_descriptions: dict[str, str] | None = None
    description: str | None = None
    language: str | None = None
    descriptions: list[str] | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        given = [s for s in TASK_SOURCES if getattr(self, s)]
        if len(given) != 1:
            raise ValueError(
                f"a task entry needs exactly one of {', '.join(TASK_SOURCES)}; got {given or 'none'}"
            )
        if self.dataset and not self.name:
            raise ValueError(f"the task entry for dataset {self.dataset!r} needs a name")
        source = given[0]
        only_dataset = ["config_name", "data_files", "revision", "columns", "split_names"]
        if self.builtin:
            only_dataset.append("validation_fraction")  # built-in tasks come with their splits
        for key in only_dataset:
            if getattr(self, key) is not None and source != "dataset":
                raise ValueError(
                    f"{key} does not apply to a {source} entry; drop it (it is for dataset entries)"
                )
        if self.max_train is not None and (not isinstance(self.max_train, int) or self.max_train < 1):
            raise ValueError(f"max_train must be a positive integer, got {self.max_train!r}")
        if self.validation_fraction is not None and not 0 < self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be between 0 and 1 (0.1 carves 10% of train), "
                f"got {self.validation_fraction!r}"
            )

    @property
    def label(self) -> str:
        return self.name or self.builtin or self.folder or str(self.dataset)

    def task_name(self, base_dir: Path | None = None) -> str:
        """The name the entry's task gets, without loading its examples (a folder's ``task_id``)."""
        if self.name or not self.folder:
            return self.label
        folder = _folder_path(self.folder, base_dir)
        try:
            meta = json.loads((folder / "task.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        return (meta.get("task_id") if isinstance(meta, dict) else None) or folder.name

    def _overrides(self) -> dict[str, Any]:
        keys = (
            "task_type",
            "text_fields",
            "label_field",
            "labels",
            "label_descriptions",
            "description",
            "language",
            "descriptions",
            "group",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def load(self, base_dir: Path | None = None, needs: tuple[str, ...] = ("train", "validation")) -> Task:
        """Read the task's examples (paths relative to the recipe's folder); a task folder must hold
        examples of the splits in ``needs``."""
        overrides = self._overrides()
        if self.builtin:
            from .builtin_tasks import load_builtin_task

            task = load_builtin_task(self.builtin)
            fixed = sorted({"task_type", "text_fields", "label_field"} & set(overrides))
            if fixed:
                raise HyperAdaptError(
                    f"task entry {self.label!r}: {', '.join(fixed)} of a built-in task cannot be changed; "
                    "drop them from the entry (or use a dataset entry for other columns)"
                )
            if "labels" in overrides and len(overrides["labels"]) != len(task.spec.labels):
                raise HyperAdaptError(
                    f"task entry {self.label!r}: labels renames the task's {len(task.spec.labels)} labels "
                    f"{task.spec.labels}, so it needs {len(task.spec.labels)} names, got {overrides['labels']}"
                )
        elif self.folder:
            # task.json fields replaced by the entry apply before the examples are checked.
            folder = _folder_path(self.folder, base_dir)
            return self._cut(
                load_task_folder(folder, self.name, overrides, self.validation_fraction, needs=needs)
            )
        else:
            spec_fields = {"name": self.name, "label_field": "label", **self._overrides()}
            missing = [k for k in ("task_type", "text_fields") if k not in spec_fields]
            if missing:
                raise HyperAdaptError(f"task {self.name!r}: a dataset entry needs {missing}")
            try:
                spec = TaskSpec(**spec_fields)
            except ValueError as err:
                raise HyperAdaptError(str(err)) from None
            data_files = _relative_files(self.data_files, base_dir)
            task = load_dataset_task(
                spec,
                self.dataset,
                self.config_name,
                data_files,
                self.columns,
                self.split_names,
                self.validation_fraction,
                self.revision,
            )
        if self.name:
            overrides["name"] = self.name
        if overrides and not self.dataset:
            try:
                task = Task(TaskSpec(**{**task.spec.to_dict(), **overrides}), task.splits)
            except (TypeError, ValueError) as err:
                raise HyperAdaptError(f"task entry {self.label!r}: {err}") from None
        return self._cut(task)

    def _cut(self, task: Task) -> Task:
        if self.max_train:
            task.splits["train"] = task.splits["train"][: self.max_train]
        return task


def _folder_path(folder: str, base_dir: Path | None) -> Path:
    """A task folder as given, or relative to the recipe's folder when it is not found as given."""
    path = Path(folder).expanduser()
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    return path


def _relative_files(files: Any, base_dir: Path | None) -> Any:
    if base_dir is None or files is None:
        return files
    if isinstance(files, str):
        path = Path(files).expanduser()
        return str(path if path.is_absolute() or path.exists() else base_dir / path)
    if isinstance(files, list):
        return [_relative_files(f, base_dir) for f in files]
    if isinstance(files, dict):
        return {k: _relative_files(v, base_dir) for k, v in files.items()}
    return files


def _absolute_files(files: Any) -> Any:
    if isinstance(files, str):
        return str(Path(files).expanduser().resolve())
    if isinstance(files, list):
        return [_absolute_files(f) for f in files]
    if isinstance(files, dict):
        return {k: _absolute_files(v) for k, v in files.items()}
    return files


@dataclass
class Recipe:
    """A whole recipe. Build it with `load_recipe`."""

    hypernetwork: HyperNetConfig
    training: TrainingConfig
    tasks: list[TaskEntry]
    held_out: list[TaskEntry] = field(default_factory=list)
    seed: int = 0
    output_dir: str = "runs/hyperadapt"
    export_adapters: bool = True
    source: str | None = None

    @property
    def base_dir(self) -> Path | None:
        return Path(self.source).resolve().parent if self.source else None

    def _entry_dict(self, entry: TaskEntry) -> dict[str, Any]:
        """A task entry with its paths made absolute, so a saved copy of the recipe (beside the
        hypernetwork) finds the data from any folder."""
        data = {k: v for k, v in asdict(entry).items() if v is not None}
        if entry.folder:
            data["folder"] = str(_folder_path(entry.folder, self.base_dir).resolve())
        if entry.data_files is not None:
            data["data_files"] = _absolute_files(_relative_files(entry.data_files, self.base_dir))
        return data

    def to_dict(self) -> dict[str, Any]:
        hyper = {k: v for k, v in self.hypernetwork.to_dict().items() if k in HyperNetConfig.recipe_fields()}
        # Settings of other adapter kinds are left out (a recipe that sets them is refused).
        for key, kinds in _KIND_SETTINGS.items():
            if self.hypernetwork.adapter not in kinds:
                hyper.pop(key)
        if self.hypernetwork.generator_chunk_size is None:
            hyper.pop("chunk_embedding_dim")
        data = {
            "seed": self.seed,
            "output_dir": self.output_dir,
            "export_adapters": self.export_adapters,
            "hypernetwork": hyper,
            "training": asdict(self.training),
            "tasks": [self._entry_dict(t) for t in self.tasks],
        }
        if self.held_out:
            data["held_out"] = [self._entry_dict(t) for t in self.held_out]
        return data

    def load_tasks(self) -> list[Task]:
        tasks = self._load(self.tasks)
        problem = group_problem([t.spec for t in tasks])
        if problem:
            raise HyperAdaptError(f"recipe: {problem}")
        return tasks

    def load_held_out(self) -> list[Task]:
        """The tasks scored zero-shot (never trained on), from the recipe's ``held_out`` list."""
        held = self._load(self.held_out)
        trained = {e.task_name(self.base_dir) for e in self.tasks}
        overlap = sorted(t.name for t in held if t.name in trained)
        if overlap:
            raise HyperAdaptError(f"recipe: {overlap} are both training tasks and held_out; drop one")
        return held

    def _load(self, entries: list[TaskEntry]) -> list[Task]:
        tasks = [entry.load(self.base_dir) for entry in entries]
        names = [t.name for t in tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise HyperAdaptError(f"recipe: task names {dupes} appear twice; give each entry its own name")
        return tasks


_TOP_KEYS = ("seed", "output_dir", "export_adapters", "hypernetwork", "training", "tasks", "held_out")


def _check_keys(section: str, given: dict[str, Any], known: list[str]) -> None:
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            where = f"{section}." if section else ""
            raise HyperAdaptError(f"recipe: unknown key {where + str(key)!r}{hint}")


_TOP_TYPES = {"seed": int, "output_dir": str, "export_adapters": bool}


def _checked(section: str, values: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    """Check each value against its field's type, so a wrong type is named before any config
    is built. YAML reads ``1e-3`` (no dot) as a string: such strings become floats for float fields."""
    out = dict(values)
    for key, value in values.items():
        if key in hints:
            where = f"{section}.{key}" if section else key
            out[key] = _expect(where, value, hints[key])
    return out


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: leave the checks to the class
        return {}


def _expect(where: str, value: Any, hint: Any) -> Any:
    if _fits(value, hint):
        return value
    if (hint is float or float in typing.get_args(hint)) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    values = [
        value,
        *(value.values() if isinstance(value, dict) else value if isinstance(value, list) else []),
    ]
    yaml_note = ""
    if any(isinstance(v, bool) for v in values) and "str" in str(hint):
        yaml_note = " (YAML reads unquoted yes/no/on/off/true/false as booleans; quote the value)"
    raise HyperAdaptError(f"recipe: {where} must be {_describe(hint)}, got {value!r}{yaml_note}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint``; true for types this check does not know."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    return True  # Any, or a type the class itself checks


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_plural(args[0])}"
    if origin is dict:
        return f"a mapping of {_plural(args[0])} to {_plural(args[1])}"
    names = {int: "an integer", float: "a number", str: "a text", bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    return _describe(hint).removeprefix("a ").removeprefix("an ") + "s"


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise HyperAdaptError(
            f"recipe: {name} must be a mapping of keys to values, got {type(value).__name__}"
        )
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to raw recipe data.

    Example:
        >>> apply_overrides({"training": {"max_steps": 600}}, ["training.max_steps=50"])
        {'training': {'max_steps': 50}}
    """
    if overrides and not isinstance(data, dict):
        raise HyperAdaptError(
            "recipe: expected a mapping of sections at the top level, so overrides can apply"
        )
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise HyperAdaptError(
                f"override {item!r} must look like section.key=value (training.max_steps=50)"
            )
        path, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        keys = path.strip().split(".")
        target = data
        for key in keys[:-1]:
            if key not in _TOP_KEYS and target is data:
                _check_keys("", {key: None}, list(_TOP_KEYS))
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise HyperAdaptError(f"override {item!r}: {key} is not a section")
        target[keys[-1]] = value
    return data


def _parse_entries(section: str, entries: Any, required: bool) -> list[TaskEntry]:
    if entries is None and not required:
        return []
    if not entries or not isinstance(entries, list):
        raise HyperAdaptError(f"recipe: {section} must be a non-empty list of task entries")
    task_keys = [f.name for f in fields(TaskEntry)]
    parsed = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"builtin": entry}
        if not isinstance(entry, dict):
            raise HyperAdaptError(f"recipe: {section}[{i}] must be a mapping or a built-in task name")
        _check_keys(f"{section}[{i}]", entry, task_keys)
        entry = _checked(f"{section}[{i}]", entry, _hints(TaskEntry))
        try:
            parsed.append(TaskEntry(**entry))
        except ValueError as err:
            raise HyperAdaptError(f"recipe: {section}[{i}]: {err}") from None
    return parsed


def parse_recipe(data: Any, source: str | None = None) -> Recipe:
    """Check raw recipe data and build a `Recipe`; every problem is a `HyperAdaptError`."""
    if not isinstance(data, dict):
        raise HyperAdaptError(f"recipe {source or ''}: expected a mapping at the top level")
    _check_keys("", data, list(_TOP_KEYS))
    hyper = _section(data, "hypernetwork")
    _check_keys("hypernetwork", hyper, HyperNetConfig.recipe_fields())
    training = _section(data, "training")
    _check_keys("training", training, [f.name for f in fields(TrainingConfig)])
    tasks = _parse_entries("tasks", data.get("tasks"), required=True)
    held_out = _parse_entries("held_out", data.get("held_out"), required=False)
    hyper = _checked("hypernetwork", hyper, _hints(HyperNetConfig))
    training = _checked("training", training, _hints(TrainingConfig))
    top = _checked("", {k: v for k, v in data.items() if k in _TOP_TYPES}, _TOP_TYPES)
    try:
        recipe = Recipe(
            hypernetwork=HyperNetConfig(**hyper),
            training=TrainingConfig(**training),
            tasks=tasks,
            held_out=held_out,
            seed=top.get("seed", 0),
            output_dir=top.get("output_dir", "runs/hyperadapt"),
            export_adapters=top.get("export_adapters", True),
            source=source,
        )
    except (TypeError, ValueError) as err:
        raise HyperAdaptError(f"recipe: {err}") from None
    _check_kind_settings(hyper, recipe.hypernetwork.adapter)
    if recipe.training.language_modelling and "language" not in recipe.hypernetwork.conditioning:
        raise HyperAdaptError(
            "recipe: training.language_modelling trains language embeddings, but hypernetwork.conditioning "
            f"({recipe.hypernetwork.conditioning}) has no 'language'; add it, or set language_modelling to 0"
        )
    if recipe.training.language_modelling and recipe.hypernetwork.is_causal_lm:
        raise HyperAdaptError(
            "recipe: training.language_modelling is masked language modelling, which a causal LM "
            "(model_class causal_lm) does not do; set it to 0"
        )
    if recipe.training.language_modelling and recipe.hypernetwork.adapter == "none":
        raise HyperAdaptError(
            "recipe: training.language_modelling needs generated adapters (hypernetwork.adapter is 'none', "
            "so the language embeddings change nothing); set it to 0"
        )
    if recipe.held_out and not recipe.hypernetwork.open_tasks:
        # With a head per task, a held-out task can only be a training group in another language.
        keys = {e.group or e.task_name(recipe.base_dir) for e in recipe.tasks}
        unknown = [e for e in recipe.held_out if e.group and e.group not in keys]
        if unknown:
            groups = sorted({e.group for e in recipe.tasks if e.group}) or ["none"]
            raise HyperAdaptError(
                f"recipe: held_out task {unknown[0].label!r} has group {unknown[0].group!r}, which no training "
                f"task has (training groups: {', '.join(groups)}); name one of them or the training task's name"
            )
        new = [e.label for e in recipe.held_out if not e.group]
        if new:
            raise HyperAdaptError(
                f"recipe: held_out tasks {new} are new tasks, scored zero-shot, which needs hypernetwork.head: "
                "label_semantic; or, for a training task's group in another language, give the entry that group"
            )
    return recipe


# Settings that only one adapter kind reads (adapter "none" exports zero LoRA adapters).
_KIND_SETTINGS = {
    "lora_rank": ("lora", "none"),
    "lora_alpha": ("lora", "none"),
    "bottleneck_size": ("bottleneck",),
    "bottleneck_placement": ("bottleneck",),
    "bottleneck_activation": ("bottleneck",),
}


def _check_kind_settings(hyper: dict[str, Any], adapter: str) -> None:
    """Refuse a setting the chosen adapter kind would silently ignore."""
    for key, kinds in _KIND_SETTINGS.items():
        if key in hyper and adapter not in kinds:
            raise HyperAdaptError(
                f"recipe: hypernetwork.{key} applies to adapter: {' or '.join(kinds)}, but this recipe has "
                f"adapter: {adapter}; drop {key} or change the adapter"
            )
    if adapter == "none" and hyper.get("generator_chunk_size") is not None:
        raise HyperAdaptError(
            "recipe: hypernetwork.generator_chunk_size applies to a generator, but adapter: none has none; drop it"
        )
    if "bottleneck_placement" in hyper and hyper.get("target_modules"):
        raise HyperAdaptError(
            "recipe: hypernetwork.bottleneck_placement chooses the modules when target_modules is not set; "
            "give one of them, not both"
        )
    if "chunk_embedding_dim" in hyper and hyper.get("generator_chunk_size") is None:
        raise HyperAdaptError(
            "recipe: hypernetwork.chunk_embedding_dim applies to chunked generation only; set "
            "generator_chunk_size too, or drop chunk_embedding_dim"
        )


def read_yaml_file(path: Path, what: str) -> Any:
    """Parse a YAML file; a file that is not UTF-8 or not YAML is a `HyperAdaptError` naming ``what``."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise HyperAdaptError(f"{what} is not valid YAML: {yaml_problem(err)}") from None
    except UnicodeDecodeError:
        raise HyperAdaptError(f"{what} is not UTF-8 text; save it as UTF-8") from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file and apply ``key=value`` overrides.

    Args:
        path: The YAML file.
        overrides: ``["training.max_steps=50", "hypernetwork.lora_rank=4"]``.

    Example:
        >>> recipe = load_recipe("recipes/quickstart.yaml", ["training.max_steps=20"])  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        raise HyperAdaptError(f"recipe {path} is a folder; give the recipe's YAML file")
    if not path.is_file():
        raise HyperAdaptError(f"recipe {path} does not exist; check the path")
    data = read_yaml_file(path, f"recipe {path}")
    if data is not None and not isinstance(data, dict):
        raise HyperAdaptError(
            f"recipe {path}: expected a mapping of sections at the top level, got {type(data).__name__}"
        )
    return parse_recipe(apply_overrides(data or {}, overrides or []), source=str(path))


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"
