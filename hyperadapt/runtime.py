"""Loading a trained hypernetwork (or an exported adapter) and finding the data of a task."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from torch import nn

from .base_model import load_sequence_classifier, load_tokenizer
from .data import Task, load_task_folder
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
    if path.exists():
        if (path / "adapter_config.json").is_file():
            raise HyperAdaptError(f"{ref} is an exported peft adapter, not a hypernetwork")
        if not (path / "config.json").is_file():
            hint = " (did you mean its hypernetwork/ subfolder?)" if (path / "hypernetwork").is_dir() else ""
            raise HyperAdaptError(f"{ref} is not a saved hypernetwork: config.json is missing{hint}")
        try:
            json.loads((path / "config.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise HyperAdaptError(
                f"{ref}/config.json is not valid JSON ({err.msg}); the checkpoint is damaged"
            ) from None
    try:
        return HyperNetwork.from_pretrained(ref, revision=revision)
    except HyperAdaptError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise HyperAdaptError(f"{ref}: config.json does not describe a hypernetwork ({err})") from None
    except OSError as err:
        raise HyperAdaptError(f"cannot load hypernetwork {ref!r}: {err}") from None


class Runtime:
    """A hypernetwork ready to generate and score: its base model, tokenizer and injection.

    Args:
        hypernet: A loaded hypernetwork.
        base_model: Overrides the base model it was trained for (it must be the same model).
    """

    def __init__(self, hypernet: HyperNetwork, base_model: str | None = None):
        self.hypernet = hypernet.eval()
        name = base_model or hypernet.config.base_model
        base = load_sequence_classifier(name, revision=hypernet.config.base_model_revision)
        check_base_matches(hypernet.config, base, name)
        self.adapted: nn.Module = AdaptedModel(base, hypernet.config)
        self.tokenizer = load_tokenizer(name, revision=hypernet.config.base_model_revision)


def resolve_task(name_or_path: str, hypernet_dir: str | Path | None = None) -> Task:
    """Find a task's data: a task folder, a built-in task, or an entry of the training recipe.

    Args:
        name_or_path: A task folder, a built-in task name, or a task named in the recipe saved
            with the hypernetwork.
        hypernet_dir: The hypernetwork's folder, whose ``recipe.yaml`` says where its tasks live.
    """
    from .builtin_tasks import builtin_task_names, load_builtin_task
    from .recipe import parse_recipe

    path = Path(name_or_path)
    if path.is_dir():
        return load_task_folder(path)
    if hypernet_dir is not None:
        recipe_file = Path(hypernet_dir) / "recipe.yaml"
        if recipe_file.is_file():
            data = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
            recipe = parse_recipe(data, source=str(recipe_file))
            for entry in recipe.tasks:
                if entry.label == name_or_path:
                    return entry.load(None)
    if name_or_path in builtin_task_names():
        return load_builtin_task(name_or_path)
    raise HyperAdaptError(
        f"cannot find the data of task {name_or_path!r}: it is not a task folder, not a built-in task "
        f"({', '.join(builtin_task_names())}) and not in the hypernetwork's recipe"
    )
