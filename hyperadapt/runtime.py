"""Loading a trained hypernetwork (or an exported adapter) and finding the data of a task."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from torch import nn

from .base_model import load_base, load_tokenizer, looks_like_path
from .conditioning import Condition, ConditionBuilder
from .data import Task, TaskSpec, load_task_folder
from .errors import HyperAdaptError
from .hypernetwork import HyperNetwork
from .injection import AdaptedModel, check_base_matches

logger = logging.getLogger(__name__)


def load_hypernetwork(ref: str | Path, revision: str | None = None) -> HyperNetwork:
    """Load a hypernetwork from a folder or a Hub repo id (safetensors only, strict).

    Raises:
        HyperAdaptError: when the folder is not a hypernetwork, or its files are missing or damaged.
    """
    ref = str(ref)
    path = Path(ref)
    if not path.exists() and looks_like_path(ref):
        raise HyperAdaptError(f"hypernetwork folder {ref} does not exist; give the RUN/hypernetwork folder")
    if path.exists():
        if not path.is_dir():
            raise HyperAdaptError(f"{ref} is a file; give the hypernetwork's folder (RUN/hypernetwork)")
        if (path / "adapter_config.json").is_file():
            raise HyperAdaptError(f"{ref} is an exported peft adapter, not a hypernetwork")
        if (path / "bottleneck_config.json").is_file():
            raise HyperAdaptError(
                f"{ref} is an exported bottleneck adapter, not a hypernetwork; load it with hyperadapt.from_pretrained"
            )
        if (path / "trainer_state.json").is_file():
            raise HyperAdaptError(
                f"{ref} is a training checkpoint, not a hypernetwork; continue its run with `hyperadapt "
                "train RECIPE --resume PATH`, or use the finished run's hypernetwork/ folder"
            )
        if not (path / "config.json").is_file() and (path / "adapter_model.safetensors").is_file():
            raise HyperAdaptError(
                f"{ref} holds adapter weights but neither adapter_config.json nor bottleneck_config.json: a "
                "damaged exported adapter, not a hypernetwork; generate it again"
            )
        if not (path / "config.json").is_file():
            hint = " (did you mean its hypernetwork/ subfolder?)" if (path / "hypernetwork").is_dir() else ""
            raise HyperAdaptError(f"{ref} is not a saved hypernetwork: config.json is missing{hint}")
    try:
        return HyperNetwork.from_pretrained(ref, revision=revision)
    except HyperAdaptError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise HyperAdaptError(f"{ref}: config.json does not describe a hypernetwork ({err})") from None
    except RuntimeError as err:  # load_state_dict: tensor shapes that differ from config.json
        first = str(err).strip().splitlines()[-1].strip()
        raise HyperAdaptError(
            f"{ref}: weights do not match config.json ({first}); the checkpoint is damaged or from another version"
        ) from None
    except OSError as err:
        where = "" if path.exists() else "it is not a local folder, and "
        raise HyperAdaptError(f"cannot load hypernetwork {ref!r}: {where}{err}") from None


class Runtime:
    """A hypernetwork ready to generate and score: its base model, tokenizer and injection.

    Args:
        hypernet: A loaded hypernetwork.
        base_model: Overrides the base model it was trained for (it must be the same model).
    """

    def __init__(self, hypernet: HyperNetwork, base_model: str | None = None):
        self.hypernet = hypernet.eval()
        name = base_model or hypernet.config.base_model
        base = load_base(hypernet.config, name=name)
        check_base_matches(hypernet.config, base, name)
        self.base_model = base
        self.adapted: nn.Module = AdaptedModel(base, hypernet.config)
        self.tokenizer = load_tokenizer(name, revision=hypernet.config.base_model_revision)
        self.conditions = ConditionBuilder(hypernet.config, hypernet.task_keys)

    def condition(
        self,
        spec: TaskSpec,
        description: str | None = None,
        examples: list[dict] | None = None,
        language: str | None = None,
    ) -> Condition:
        """The condition for a task, seen or new, in a language (see `ConditionBuilder.build`)."""
        return self.conditions.build(spec, description=description, examples=examples, language=language)


def parse_labels(text: str) -> tuple[list[str], dict[str, str]]:
    """Read ``"name: what it means; name2: what it means"`` into names and descriptions.

    Example:
        >>> parse_labels("sport: about a sport; other: about anything else")
        (['sport', 'other'], {'sport': 'about a sport', 'other': 'about anything else'})
    """
    names, descriptions = [], {}
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        name, _, meaning = item.partition(":")
        name, meaning = name.strip(), meaning.strip()
        if not name:
            raise HyperAdaptError(f"--labels: {item!r} has no label name; write 'name: what it means; ...'")
        if name in descriptions or name in names:
            raise HyperAdaptError(f"--labels: label {name!r} is given twice")
        names.append(name)
        if meaning:
            descriptions[name] = meaning
    if len(names) < 2:
        raise HyperAdaptError(
            f"--labels needs at least two labels, got {names or 'none'}; write 'name: what it means; name2: ...'"
        )
    return names, descriptions


def new_task_spec(
    name: str, description: str, labels: str | None, text_fields: list[str] | None = None
) -> TaskSpec:
    """The spec of a task given only in words (zero-shot generation).

    Args:
        name: A name for the task.
        description: What the task is, in plain language.
        labels: ``"name: meaning; ..."``, see `parse_labels`; None for a text_generation task
            (free-text answers, for a causal LM).
        text_fields: ``["sentence"]`` (default) or two fields for a sentence-pair task.
    """
    if not description or not description.strip():
        raise HyperAdaptError("--description is empty; write in a sentence or two what the task is")
    names, meanings = parse_labels(labels) if labels is not None else ([], {})
    fields = text_fields or ["sentence"]
    if labels is None:
        task_type = "text_generation"
    else:
        task_type = "sentence_pair_classification" if len(fields) == 2 else "sequence_classification"
    try:
        return TaskSpec(
            name=name,
            task_type=task_type,
            text_fields=fields,
            labels=names,
            label_descriptions=meanings,
            description=description.strip(),
        )
    except ValueError as err:
        raise HyperAdaptError(str(err)) from None


def resolve_task(
    name_or_path: str,
    hypernet_dir: str | Path | None = None,
    needs: tuple[str, ...] = ("train", "validation"),
) -> Task:
    """Find a task's data: a task folder, a built-in task, or an entry of the training recipe.

    Args:
        name_or_path: A task folder, a built-in task name, or a task named in the recipe saved
            with the hypernetwork.
        hypernet_dir: The hypernetwork's folder, whose ``recipe.yaml`` says where its tasks live.
        needs: The splits a task folder must hold examples of.
    """
    from .builtin_tasks import builtin_task_names, load_builtin_task
    from .recipe import parse_recipe, yaml_problem

    path = Path(name_or_path)
    if path.is_dir():
        return load_task_folder(path, needs=needs)
    if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
        return _task_from_entry_file(path, needs)
    if hypernet_dir is not None:
        recipe_file = Path(hypernet_dir) / "recipe.yaml"
        if recipe_file.is_file():
            try:
                data = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as err:
                problem = yaml_problem(err) if isinstance(err, yaml.YAMLError) else "not UTF-8 text"
                raise HyperAdaptError(
                    f"{recipe_file} is damaged ({problem}); pass the task's folder to --task instead"
                ) from None
            recipe = parse_recipe(data, source=str(recipe_file))
            for entry in [*recipe.tasks, *recipe.held_out]:
                if name_or_path in (entry.label, entry.task_name()):
                    return entry.load(None, needs)
    if name_or_path in builtin_task_names():
        return load_builtin_task(name_or_path)
    raise HyperAdaptError(
        f"cannot find the data of task {name_or_path!r}: it is not a task folder, not a built-in task "
        f"({', '.join(builtin_task_names())}) and not in the hypernetwork's recipe"
    )


def _task_from_entry_file(path: Path, needs: tuple[str, ...]) -> Task:
    """A task described by one recipe-style task entry in a YAML or JSON file."""
    from dataclasses import fields

    from .recipe import TaskEntry, _check_keys, _checked, _hints, read_yaml_file

    data = read_yaml_file(path, str(path))
    if not isinstance(data, dict):
        raise HyperAdaptError(f"{path} must hold one task entry (a mapping such as {{folder: ...}})")
    _check_keys(path.name, data, [f.name for f in fields(TaskEntry)])
    data = _checked(path.name, data, _hints(TaskEntry))
    try:
        entry = TaskEntry(**data)
    except ValueError as err:
        raise HyperAdaptError(f"{path}: {err}") from None
    return entry.load(path.resolve().parent, needs)
