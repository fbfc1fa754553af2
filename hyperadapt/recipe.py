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

import contextlib
import copy
import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .config import HyperNetConfig
from .data import Task, TaskSpec, load_dataset_task, load_task_folder
from .errors import HyperAdaptError


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
    log_every: int = field(default=20, metadata={"help": "Log the running loss every N steps."})

    def __post_init__(self) -> None:
        for name in (
            "max_steps",
            "batch_size",
            "max_length",
            "eval_batch_size",
            "max_eval_examples",
            "gradient_accumulation_steps",
            "log_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"training.{name} must be a positive integer, got {value!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"training.eval_every must be an integer >= 0, got {self.eval_every!r}")
        for name in ("learning_rate", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"training.{name} must be a positive number, got {value!r}")
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"training.{name} must be a number >= 0, got {value!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"training.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(
                f"training.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}"
            )

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
    the task's description; training draws one per step.
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

    def __post_init__(self) -> None:
        given = [s for s in TASK_SOURCES if getattr(self, s)]
        if len(given) != 1:
            raise ValueError(
                f"a task entry needs exactly one of {', '.join(TASK_SOURCES)}; got {given or 'none'}"
            )
        if self.dataset and not self.name:
            raise ValueError(f"the task entry for dataset {self.dataset!r} needs a name")
        if self.max_train is not None and (not isinstance(self.max_train, int) or self.max_train < 1):
            raise ValueError(f"max_train must be a positive integer, got {self.max_train!r}")

    @property
    def label(self) -> str:
        return self.name or self.builtin or self.folder or str(self.dataset)

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
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def load(self, base_dir: Path | None = None) -> Task:
        """Read the task's examples (paths relative to the recipe's folder)."""
        if self.builtin:
            from .builtin_tasks import load_builtin_task

            task = load_builtin_task(self.builtin)
        elif self.folder:
            folder = Path(self.folder).expanduser()
            if not folder.is_absolute() and base_dir is not None and not folder.exists():
                folder = base_dir / folder
            task = load_task_folder(folder)
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
        overrides = self._overrides()
        if self.name:
            overrides["name"] = self.name
        if overrides and not self.dataset:
            try:
                task = Task(TaskSpec(**{**task.spec.to_dict(), **overrides}), task.splits)
            except (TypeError, ValueError) as err:
                raise HyperAdaptError(f"task entry {self.label!r}: {err}") from None
        if self.max_train:
            task.splits["train"] = task.splits["train"][: self.max_train]
        return task


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
        data = {k: v for k, v in asdict(entry).items() if v is not None}
        if entry.folder and self.base_dir is not None and not Path(entry.folder).exists():
            data["folder"] = str(
                (self.base_dir / entry.folder).resolve()
            )  # stays valid beside the checkpoint
        return data

    def to_dict(self) -> dict[str, Any]:
        hyper = {k: v for k, v in self.hypernetwork.to_dict().items() if k in HyperNetConfig.recipe_fields()}
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
        return self._load(self.tasks)

    def load_held_out(self) -> list[Task]:
        """The tasks scored zero-shot (never trained on), from the recipe's ``held_out`` list."""
        held = self._load(self.held_out)
        trained = {e.label for e in self.tasks}
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
            raise HyperAdaptError(f"recipe: unknown key {where}{key!r}{hint}")


def _coerce_numbers(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """YAML reads ``1e-3`` (no dot) as a string; turn such strings into floats for float fields."""
    float_fields = {f.name for f in fields(cls) if "float" in str(f.type)}
    out = dict(values)
    for key, value in values.items():
        if key in float_fields and isinstance(value, str):
            with contextlib.suppress(ValueError):  # else left as is: the config's check names it
                out[key] = float(value)
    return out


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
    try:
        recipe = Recipe(
            hypernetwork=HyperNetConfig(**_coerce_numbers(HyperNetConfig, hyper)),
            training=TrainingConfig(**_coerce_numbers(TrainingConfig, training)),
            tasks=tasks,
            held_out=held_out,
            seed=int(data.get("seed", 0)),
            output_dir=str(data.get("output_dir", "runs/hyperadapt")),
            export_adapters=bool(data.get("export_adapters", True)),
            source=source,
        )
    except (TypeError, ValueError) as err:
        raise HyperAdaptError(f"recipe: {err}") from None
    if recipe.held_out and recipe.hypernetwork.head != "label_semantic":
        raise HyperAdaptError(
            "recipe: held_out tasks are scored zero-shot, which needs hypernetwork.head: label_semantic"
        )
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file and apply ``key=value`` overrides.

    Args:
        path: The YAML file.
        overrides: ``["training.max_steps=50", "hypernetwork.lora_rank=4"]``.

    Example:
        >>> recipe = load_recipe("recipes/quickstart.yaml", ["training.max_steps=20"])  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise HyperAdaptError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise HyperAdaptError(f"recipe {path} is not valid YAML: {err}") from None
    return parse_recipe(apply_overrides(data or {}, overrides or []), source=str(path))
