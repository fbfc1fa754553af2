"""Bottleneck adapters: a down projection, a non-linearity and an up projection added to a module's output.

``peft`` has no bottleneck adapter, so hyperadapt wraps the modules itself: `BottleneckAdapter`
holds the original module as ``base_layer`` and returns ``h + up(act(down(h)))`` for its output
``h``. Placed after a block's attention output projection and its feed-forward output projection
(Houlsby), or after the feed-forward one only (Pfeiffer), that is the adapter the papers describe:
inside the residual branch, before the residual sum and layer norm. No model file is forked or
patched; the modules are found from the model's structure.

A generated adapter is saved as a folder (``bottleneck_config.json``, ``adapter_model.safetensors``
holding the adapter and the task head, a model card) and loaded with `from_pretrained`, which
returns the base ``transformers`` model with its modules wrapped: an ordinary ``torch.nn.Module``
that works in a ``pipeline``.

Example:
    >>> from hyperadapt import from_pretrained  # doctest: +SKIP
    >>> model = from_pretrained("minilm", "runs/bottleneck/adapters/trec_coarse")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import HyperAdaptError

BOTTLENECK_CONFIG = "bottleneck_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "hyperadapt-bottleneck"
FORMAT_VERSION = 1
_PARAMS = ("adapter_down.weight", "adapter_down.bias", "adapter_up.weight", "adapter_up.bias")


def _output_features(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    weight = getattr(module, "weight", None)  # transformers' Conv1D stores [in, out]
    if weight is not None and weight.dim() == 2:
        return int(weight.shape[1])
    raise HyperAdaptError(
        f"{type(module).__name__} is not a linear layer; a bottleneck adapter wraps linear layers"
    )


class BottleneckAdapter(nn.Module):
    """A module followed by a residual bottleneck: ``h = base(x); h + up(act(down(h)))``.

    Args:
        base_layer: The wrapped module (a linear layer); it is called unchanged.
        size: Width of the bottleneck.
        activation: ``relu``, ``gelu``, ``silu`` or ``tanh``.

    The up projection starts at zero, so a fresh adapter leaves the model's outputs unchanged.
    """

    def __init__(self, base_layer: nn.Module, size: int, activation: str = "relu"):
        super().__init__()
        from transformers.activations import ACT2FN

        features = _output_features(base_layer)
        weight = base_layer.weight
        self.base_layer = base_layer
        self.adapter_down = nn.Linear(features, size, device=weight.device, dtype=weight.dtype)
        self.adapter_up = nn.Linear(size, features, device=weight.device, dtype=weight.dtype)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)
        self.activation_name = activation
        self.activation = ACT2FN[activation]

    @property
    def weight(self) -> torch.Tensor:  # code that reads a linear layer's weight keeps working
        return self.base_layer.weight

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        hidden = self.base_layer(x, *args, **kwargs)
        return hidden + self.adapter_up(self.activation(self.adapter_down(hidden)))

    def extra_repr(self) -> str:
        return f"size={self.adapter_down.out_features}, activation={self.activation_name}"


def inject_bottlenecks(model: nn.Module, module_names: list[str], size: int, activation: str) -> None:
    """Replace each named module of ``model`` by a `BottleneckAdapter` around it (in place)."""
    for name in module_names:
        module = model.get_submodule(name)
        if isinstance(module, BottleneckAdapter):
            raise HyperAdaptError(f"module {name} already carries a bottleneck adapter")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, BottleneckAdapter(module, size, activation))


def adapter_parameter_names(module_name: str) -> list[str]:
    """The names of one wrapped module's adapter tensors, in the order the generator emits them."""
    return [f"{module_name}.{param}" for param in _PARAMS]


def default_bottleneck_modules(model: nn.Module, placement: str) -> list[str]:
    """Where bottleneck adapters go by default, found from the structure of the model's first block.

    A transformer block registers its attention sub-layer before its feed-forward sub-layer. The
    feed-forward output is the block's last linear layer mapping back to the hidden size; its
    input layers are those whose output has the feed-forward width; the attention output is the
    last linear layer into the hidden size registered before them.

    Returns:
        Module kinds (paths inside a block), attention output first: both for ``houlsby``, the
        feed-forward output only for ``pfeiffer``.
    """
    from .base_model import layer_index, linear_module_names, module_kind

    names = linear_module_names(model)
    if not names:
        raise HyperAdaptError(f"{type(model).__name__} has no linear layers inside numbered blocks")
    first = min(layer_index(n) for n in names)
    block = [(module_kind(n), model.get_submodule(n)) for n in names if layer_index(n) == first]
    shapes = [(kind, *_shape(module)) for kind, module in block]
    hidden = model.get_input_embeddings().embedding_dim
    into_hidden = [i for i, (_, _, out_f) in enumerate(shapes) if out_f == hidden]
    problem = None
    if not into_hidden:
        problem = f"no linear layer of a block maps back to the hidden size {hidden}"
    else:
        ffn_out = into_hidden[-1]
        ffn_width = shapes[ffn_out][1]
        ffn_in = [i for i, (_, _, out_f) in enumerate(shapes) if out_f == ffn_width and i < ffn_out]
        attention_out = [i for i in into_hidden if ffn_in and i < ffn_in[0]]
        if ffn_width == hidden or not ffn_in:
            problem = "its feed-forward layers cannot be told from its attention layers"
        elif placement == "pfeiffer":
            return [shapes[ffn_out][0]]
        elif not attention_out:
            problem = "no attention output projection comes before its feed-forward layers"
        else:
            return [shapes[attention_out[-1]][0], shapes[ffn_out][0]]
    raise HyperAdaptError(
        f"cannot find where bottleneck adapters go in {type(model).__name__}: {problem}; set target_modules "
        f"in the recipe to the modules whose outputs get adapters (modules of a block: {[k for k, *_ in shapes]})"
    )


def _shape(module: nn.Module) -> tuple[int, int]:
    from .injection import _linear_shape

    return _linear_shape(module)


# Saving and loading a generated bottleneck adapter.


def save_bottleneck_folder(
    folder: Path,
    model: nn.Module,
    module_names: list[str],
    head_name: str,
    info: dict[str, Any],
) -> None:
    """Write the adapter tensors and head of a wrapped model, and its config, into ``folder``."""
    from safetensors.torch import save_file

    state = {}
    for name in module_names:
        for param in adapter_parameter_names(name):
            state[param] = model.get_parameter(param).detach().contiguous()
    for param, tensor in model.get_submodule(head_name).named_parameters():
        state[f"{head_name}.{param}"] = tensor.detach().contiguous()
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **info, "modules": module_names}
    (folder / BOTTLENECK_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")


def read_bottleneck_config(folder: Path) -> dict[str, Any]:
    """The config of a saved bottleneck adapter, checked.

    Raises:
        HyperAdaptError: when the folder is not a bottleneck adapter, or its config is damaged.
    """
    file = folder / BOTTLENECK_CONFIG
    if not folder.is_dir():
        raise HyperAdaptError(f"bottleneck adapter folder {folder} does not exist")
    if not file.is_file():
        if (folder / "adapter_config.json").is_file():
            raise HyperAdaptError(
                f"{folder} is a peft adapter; load it with peft's PeftModel.from_pretrained"
            )
        raise HyperAdaptError(f"{folder} is not a bottleneck adapter: {BOTTLENECK_CONFIG} is missing")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise HyperAdaptError(f"{file} is not valid JSON ({err}); generate the adapter again") from None
    needed = {
        "format": str,
        "format_version": int,
        "base_model": str,
        "model_type": str,
        "hidden_size": int,
        "bottleneck_size": int,
        "activation": str,
        "head_name": str,
        "num_labels": int,
        "modules": list,
        "module_shapes": dict,
    }
    if not isinstance(config, dict):
        raise HyperAdaptError(f"{file} is not a JSON object; generate the adapter again")
    wrong = [
        k
        for k, kind in needed.items()
        if not isinstance(config.get(k), kind) or isinstance(config.get(k), bool)
    ]
    if wrong:
        raise HyperAdaptError(
            f"{file} is damaged (missing or wrong: {', '.join(wrong)}); generate the adapter again"
        )
    if config["format"] != FORMAT or not 1 <= config["format_version"] <= FORMAT_VERSION:
        raise HyperAdaptError(
            f"{file} is format {config['format']!r} version {config['format_version']}; this hyperadapt reads "
            f"{FORMAT!r} up to version {FORMAT_VERSION}; upgrade hyperadapt"
        )
    from .config import BOTTLENECK_ACTIVATIONS

    labels = config.get("labels")
    if labels is not None and (
        not isinstance(labels, list)
        or len(labels) != config["num_labels"]
        or not all(isinstance(x, str) for x in labels)
    ):
        raise HyperAdaptError(
            f"{file} is damaged (labels do not match num_labels); generate the adapter again"
        )
    if not config["modules"] or not all(isinstance(m, str) and m for m in config["modules"]):
        raise HyperAdaptError(f"{file} is damaged (no adapted modules listed); generate the adapter again")
    if len(set(config["modules"])) != len(config["modules"]):
        raise HyperAdaptError(f"{file} is damaged (a module is listed twice); generate the adapter again")
    if (
        config["activation"] not in BOTTLENECK_ACTIVATIONS
        or config["bottleneck_size"] < 1
        or config["num_labels"] < 1
    ):
        raise HyperAdaptError(f"{file} is damaged (activation, size or labels); generate the adapter again")
    return config


def from_pretrained(
    base_model: str | nn.Module,
    folder: str | Path,
    revision: str | None = None,
    token: str | bool | None = None,
) -> nn.Module:
    """Load a generated bottleneck adapter onto its base model.

    Args:
        base_model: The base model: an ``AutoModelForSequenceClassification`` you loaded, or its name
            (``"minilm"``, a local folder or a Hub id) to load it with the adapter's number of labels
            (at the base revision the adapter records).
        folder: A folder written by ``hyperadapt generate`` (or a training run's ``adapters/TASK``)
            for a hypernetwork with ``adapter: bottleneck``, or the Hub repo id it was pushed to.
        revision: The adapter's Hub revision, when ``folder`` is a repo id.
        token: Hub token for a private adapter repository.

    Returns:
        The base model, its adapted modules wrapped, its head replaced by the task's, in eval mode
        (``config.id2label`` names the task's labels, so ``transformers.pipeline`` reports them).

    Raises:
        HyperAdaptError: when the folder is damaged or pickled, or ``base_model`` is not the model
            the adapter was generated for.

    Example:
        >>> model = from_pretrained("minilm", "runs/bottleneck/adapters/trec_coarse")  # doctest: +SKIP
        >>> pipeline("text-classification", model=model, tokenizer=load_tokenizer("minilm"))  # doctest: +SKIP
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = _local_folder(folder, revision, token)
    config = read_bottleneck_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickled = any(folder.glob("*.bin")) or any(folder.glob("*.pt"))
        raise HyperAdaptError(
            f"{folder} has no {WEIGHTS_NAME}"
            + (
                " (only pickled weights, which hyperadapt does not load: pickles can run code)"
                if pickled
                else ""
            )
            + "; generate the adapter again"
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise HyperAdaptError(
            f"{weights} is corrupt or truncated ({err}); generate the adapter again"
        ) from None

    if isinstance(base_model, str):
        from .base_model import load_sequence_classifier

        name = base_model
        base_revision = config.get("base_model_revision")
        model = load_sequence_classifier(
            base_model,
            num_labels=config["num_labels"],
            revision=base_revision if isinstance(base_revision, str) else None,
        )
    elif isinstance(base_model, nn.Module):
        name = getattr(getattr(base_model, "config", None), "name_or_path", "") or type(base_model).__name__
        model = base_model
    else:
        raise HyperAdaptError(f"base_model must be a model or its name, got {type(base_model).__name__}")
    # Everything is checked before the model is touched: a refused folder leaves it as it was.
    _check_base(model, config, name)
    _check_tensors(model, config, state, weights)
    inject_bottlenecks(model, config["modules"], config["bottleneck_size"], config["activation"])
    with torch.no_grad():
        for key, tensor in state.items():
            model.get_parameter(key).copy_(tensor)
    labels = config.get("labels")
    if labels:
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {label: i for i, label in enumerate(labels)}
    if config["num_labels"] == 1:
        model.config.problem_type = "regression"
    return model.eval()


def _check_tensors(
    model: nn.Module, config: dict[str, Any], state: dict[str, torch.Tensor], weights: Path
) -> None:
    """The file's tensors are exactly the adapter's and the head's, of the right shapes, finite floats."""
    size = config["bottleneck_size"]
    expected: dict[str, tuple[int, ...]] = {}
    for module_name in config["modules"]:
        features = _output_features(model.get_submodule(module_name))
        shapes = [(size, features), (size,), (features, size), (features,)]
        expected.update(zip(adapter_parameter_names(module_name), shapes, strict=True))
    head = config["head_name"]
    for param, tensor in model.get_submodule(head).named_parameters():
        expected[f"{head}.{param}"] = tuple(tensor.shape)
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise HyperAdaptError(
            f"{weights} does not match {BOTTLENECK_CONFIG} (missing {missing[:3]}, unexpected {extra[:3]}); "
            "generate the adapter again"
        )
    mismatched = [k for k, t in state.items() if tuple(t.shape) != expected[k]]
    if mismatched:
        raise HyperAdaptError(
            f"{weights}: tensors {mismatched[:3]} have other shapes than {BOTTLENECK_CONFIG} and the base model "
            "give them; the folder is damaged, generate the adapter again"
        )
    bad = [k for k, t in state.items() if not t.is_floating_point() or not bool(torch.isfinite(t).all())]
    if bad:
        raise HyperAdaptError(
            f"{weights}: tensors {bad[:3]} are not finite floating-point numbers; generate the adapter again"
        )


def _local_folder(folder: str | Path, revision: str | None, token: str | bool | None) -> Path:
    """The adapter's folder: as given, or downloaded (checked) when it names a Hub repository."""
    from .base_model import looks_like_path

    path = Path(folder)
    if path.exists() or looks_like_path(str(folder)) or str(folder).count("/") != 1:
        if revision is not None and not path.exists():
            raise HyperAdaptError(
                f"revision {revision!r} was given, but {folder} is neither a folder nor a repo id"
            )
        return path
    from .hub import download_files

    return download_files(
        str(folder),
        (BOTTLENECK_CONFIG, WEIGHTS_NAME),
        ("hyperadapt_task.json", "README.md"),
        _check_listing,
        revision=revision,
        token=token,
    )


def _check_listing(repo_id: str, where: str, files: dict[str, Any]) -> None:
    if BOTTLENECK_CONFIG not in files:
        if "adapter_config.json" in files:
            raise HyperAdaptError(
                f"{where} is a peft adapter repository; load it with PeftModel.from_pretrained(base, {repo_id!r})"
            )
        raise HyperAdaptError(
            f"{where} is not a bottleneck adapter repository: it has no {BOTTLENECK_CONFIG}"
        )
    if WEIGHTS_NAME not in files:
        pickles = sorted(f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl")))
        what = f"only pickled weights ({', '.join(pickles)})" if pickles else f"no {WEIGHTS_NAME}"
        raise HyperAdaptError(f"{where} has {what}; hyperadapt loads safetensors only")


def _check_base(model: nn.Module, config: dict[str, Any], name: str) -> None:
    """Refuse a base model other than the adapter's (architecture, width, depth, modules, head)."""
    from .base_model import linear_module_names, module_kind

    model_config = getattr(model, "config", None)
    found_type = getattr(model_config, "model_type", "?")
    found_hidden = getattr(model_config, "hidden_size", None)
    kinds = config["module_shapes"]
    problem = None
    if found_type != config["model_type"] or found_hidden != config["hidden_size"]:
        problem = f"{name!r} is {found_type} with hidden size {found_hidden}"
    elif any(isinstance(m, BottleneckAdapter) for m in model.modules()):
        raise HyperAdaptError(
            f"{name!r} already carries bottleneck adapters; load the adapter onto a freshly loaded base model"
        )
    else:
        present = [n for n in linear_module_names(model) if module_kind(n) in kinds]
        if present != config["modules"]:
            problem = (
                f"{name!r} has {len(present)} modules of the adapted kinds ({', '.join(kinds)}), where the "
                f"adapter has {len(config['modules'])}"
            )
        else:
            for module_name in present:
                shape = list(_shape(model.get_submodule(module_name)))
                if shape != kinds[module_kind(module_name)]:
                    problem = (
                        f"{name!r} has {module_name} of shape {shape}, not {kinds[module_kind(module_name)]}"
                    )
                    break
    if problem is None:
        try:
            model.get_submodule(config["head_name"])
        except AttributeError:
            problem = f"{type(model).__name__} has no {config['head_name']!r} head (load it as a sequence classifier)"
    if problem:
        raise HyperAdaptError(
            f"this bottleneck adapter was generated for base model {config['base_model']!r} "
            f"({config['model_type']}, hidden {config['hidden_size']}, {len(config['modules'])} adapted modules), "
            f"but {problem}; load it on the base model it was generated for"
        )
    loaded_labels = getattr(model_config, "num_labels", None)
    if loaded_labels != config["num_labels"]:
        raise HyperAdaptError(
            f"{name!r} was loaded with num_labels={loaded_labels}, but the adapter's task has "
            f"{config['num_labels']} output{'s' if config['num_labels'] != 1 else ''}; load the base model with "
            f"num_labels={config['num_labels']} (or pass its name and let from_pretrained load it)"
        )
