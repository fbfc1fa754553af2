"""Putting generated weights into the frozen base model.

The base model is wrapped once with ``peft`` (a ``LoraConfig`` or ``IA3Config`` over the target
modules), so it holds ordinary LoRA or (IA)^3 slots; for bottleneck adapters, which peft lacks,
its target modules are wrapped with `BottleneckAdapter`. For each batch, `AdaptedModel` runs it with
``torch.func.functional_call``, passing the generated ``A`` and ``B`` under the slots' parameter
names and the task's head under the classifier's. Training, evaluation and export use the same
peft modules, so an exported adapter computes exactly what the hypernetwork computed.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from .base_model import (
    default_feedforward_modules,
    default_target_modules,
    head_module_name,
    layer_index,
    linear_module_names,
    module_kind,
    token_view,
)
from .config import HyperNetConfig
from .errors import HyperAdaptError

logger = logging.getLogger(__name__)

ADAPTER_NAME = "default"


def matched_modules(model: nn.Module, targets: list[str], adapter: str = "lora") -> list[str]:
    """The names of the linear layers that the target names select, in the model's order.

    A target selects the modules whose name ends with it (peft's rule). For bottleneck adapters,
    which hyperadapt injects itself, a target that is exactly a module's path inside its block
    (``output.dense``) selects only that module, not ``attention.output.dense`` too.

    Raises:
        HyperAdaptError: when a target matches no linear layer; the message lists the choices.
    """
    linear = linear_module_names(model)
    selected: set[str] = set()
    for target in targets:
        matched = [n for n in linear if n == target or n.endswith(f".{target}")]
        if adapter == "bottleneck" and any(module_kind(n) == target for n in matched):
            matched = [n for n in matched if module_kind(n) == target]
        if not matched:
            options = sorted({n.rsplit(".", 1)[-1] for n in linear})
            raise HyperAdaptError(
                f"target module {target!r} matches no linear layer of {type(model).__name__}; "
                f"choose from {options}"
            )
        selected.update(matched)
    return [n for n in linear if n in selected]


def describe_base_model(
    model: nn.Module,
    target_modules: list[str] | None,
    adapter: str = "lora",
    feedforward_modules: list[str] | None = None,
    placement: str = "houlsby",
    token_heads: bool = False,
    causal_lm: bool = False,
) -> dict[str, Any]:
    """What the hypernetwork needs to know of a base model: adapted modules, their shapes, the head.

    Args:
        model: A ``*ForSequenceClassification`` model (unwrapped).
        target_modules: Last name components of the modules to adapt; None finds them.
        adapter: The adapter kind (its default targets differ).
        feedforward_modules: (IA)^3: modules whose input is scaled; None takes peft's table.
        placement: Bottleneck adapters: ``houlsby`` or ``pfeiffer`` (when no targets are given).
        token_heads: Also describe the head of the architecture's token-classification model.
        causal_lm: ``model`` is a causal LM: its own LM head scores targets, so no head is described.

    Raises:
        HyperAdaptError: when a target matches nothing, or a matched module is not a linear layer
            inside a numbered block.
    """
    targets = list(target_modules) if target_modules else default_target_modules(model, adapter, placement)
    if adapter == "ia3" and feedforward_modules is None:
        # peft's feed-forward modules for the model, as far as they are among the targets.
        feedforward_modules = [f for f in default_feedforward_modules(model) if f in targets]
    feedforward = list(feedforward_modules or [])
    shapes: dict[str, list[int]] = {}
    layers: dict[str, list[int]] = {}
    for name in matched_modules(model, targets, adapter):
        module = model.get_submodule(name)
        in_f, out_f = _linear_shape(module)
        kind = module_kind(name)
        if kind in shapes and shapes[kind] != [in_f, out_f]:
            raise HyperAdaptError(f"module kind {kind!r} has different shapes across layers")
        shapes[kind] = [in_f, out_f]
        layers.setdefault(kind, []).append(layer_index(name))
    # peft's rule for (IA)^3: a module whose name ends with a feed-forward name scales its input.
    feedforward_kinds = sorted(k for k in shapes if any(k == f or k.endswith(f".{f}") for f in feedforward))
    unknown = [f for f in feedforward if not any(k == f or k.endswith(f".{f}") for k in shapes)]
    if unknown:
        raise HyperAdaptError(
            f"feedforward_modules {unknown} are not among the target modules {targets}; add them to "
            "target_modules or drop them from feedforward_modules"
        )
    head_name, head_shapes = ("", {}) if causal_lm else _head_shapes(model)
    token_head_name, token_head_shapes = _head_shapes(token_view(model)) if token_heads else ("", {})
    return {
        "target_modules": targets,
        "num_layers": max(max(v) for v in layers.values()) + 1,
        "module_shapes": shapes,
        "module_layers": {k: sorted(v) for k, v in layers.items()},
        "feedforward_modules": feedforward if adapter == "ia3" else None,
        "feedforward_kinds": feedforward_kinds if adapter == "ia3" else [],
        "head_shapes": head_shapes,
        "head_name": head_name,
        "token_head_shapes": token_head_shapes,
        "token_head_name": token_head_name,
        "model_type": getattr(model.config, "model_type", ""),
        "hidden_size": getattr(model.config, "hidden_size", 0) or 0,
    }


def _head_shapes(model: nn.Module) -> tuple[str, dict[str, list[int]]]:
    """The head's name and its parameters' shapes, the label dimension of the output layer as -1
    (each task sets its own width)."""
    head_name = head_module_name(model)
    head = model.get_submodule(head_name)
    placeholder = model.config.num_labels
    head_shapes = {}
    for name, param in head.named_parameters():
        shape = list(param.shape)
        owner = head.get_submodule(name.rsplit(".", 1)[0]) if "." in name else head
        if isinstance(owner, nn.Linear) and owner.out_features == placeholder and shape[0] == placeholder:
            shape[0] = -1
        head_shapes[name] = shape
    if not any(-1 in s for s in head_shapes.values()):
        raise HyperAdaptError(
            f"cannot find the output layer of the {head_name!r} head of {type(model).__name__}"
        )
    return head_name, head_shapes


def _linear_shape(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)  # transformers' Conv1D stores [in, out]
    if weight is not None and weight.dim() == 2:
        return int(weight.shape[0]), int(weight.shape[1])
    raise HyperAdaptError(f"{type(module).__name__} is not a linear layer")


def check_base_matches(config: HyperNetConfig, model: nn.Module, base_name: str) -> None:
    """Refuse a base model other than the one the hypernetwork was trained for, naming both."""
    try:
        found = describe_base_model(
            model, config.target_modules, config.adapter, causal_lm=config.is_causal_lm
        )
    except HyperAdaptError:  # its modules do not even have the trained names
        found = {
            "model_type": getattr(model.config, "model_type", "?"),
            "num_layers": "?",
            "hidden_size": getattr(model.config, "hidden_size", "?"),
            "module_shapes": None,
        }
    same = (
        found["model_type"] == config.model_type
        and found["hidden_size"] == config.hidden_size
        and found["module_shapes"] == config.module_shapes
        and found.get("module_layers") == config.module_layers
    )
    if not same:
        outline_same = (found["model_type"], found["hidden_size"], found["num_layers"]) == (
            config.model_type,
            config.hidden_size,
            config.num_layers,
        )
        if outline_same:  # same architecture and size: the adapted modules differ
            detail = (
                f"its adapted modules differ from those in the hypernetwork's config.json "
                f"({found.get('module_layers')} against {config.module_layers}); the config is edited or damaged, "
                "or target_modules names modules this base has otherwise"
            )
            raise HyperAdaptError(f"base model {base_name!r} does not match this hypernetwork: {detail}")
        raise HyperAdaptError(
            f"this hypernetwork was trained for base model {config.base_model!r} "
            f"({config.model_type}, hidden {config.hidden_size}, {config.num_layers} layers), but "
            f"{base_name!r} is {found['model_type']} with hidden {found['hidden_size']} and "
            f"{found['num_layers']} layers; load it with the base model it was trained for"
        )


def lora_config(config: HyperNetConfig, **extra: Any):
    """The peft config whose slots the generated weights fill: LoRA, or (IA)^3 for ``adapter: ia3``."""
    if config.adapter == "ia3":
        from peft import IA3Config

        return IA3Config(
            target_modules=list(config.target_modules),
            feedforward_modules=list(config.feedforward_modules or []),
            **extra,
        )
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(config.target_modules),
        bias="none",
        **extra,
    )


def lora_slots(model: nn.Module) -> dict[str, list[tuple[int, str, nn.Module]]]:
    """The adapter layers of a model by module kind: ``(layer index, module name, module)``.

    Adapter layers are peft's LoRA and (IA)^3 layers and hyperadapt's bottleneck adapters.
    """
    from peft.tuners.ia3 import IA3Layer
    from peft.tuners.lora import LoraLayer

    from .bottleneck import BottleneckAdapter

    slots: dict[str, list[tuple[int, str, nn.Module]]] = {}
    for name, module in model.named_modules():
        if isinstance(module, (LoraLayer, IA3Layer, BottleneckAdapter)):
            slots.setdefault(module_kind(name), []).append((layer_index(name), name, module))
    return {kind: sorted(entries, key=lambda e: e[0]) for kind, entries in slots.items()}


def _block_path(module_name: str) -> str:
    """The numbered block a module sits in (``...layers.3.self_attn.q_proj`` -> ``...layers.3``)."""
    kind = module_kind(module_name)
    return module_name.removesuffix(f".{kind}")


def _tensor_at(module: nn.Module, name: str) -> torch.Tensor:
    owner, _, attribute = name.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, attribute)


def _checkpoint_block(block: nn.Module, names: list[str]) -> None:
    """Run ``block`` under activation checkpointing, its generated tensors ``names`` passed in."""
    if getattr(block, "_hyperadapt_checkpointed", False):
        return
    inner = block.forward
    recomputing = False

    def run(values: tuple[torch.Tensor, ...], args: tuple, kwargs: dict) -> Any:
        nonlocal recomputing
        recomputing = True  # the block's own forward, with these tensors in its slots
        try:
            return functional_call(
                block, dict(zip(names, values, strict=True)), args, kwargs, strict=False, tie_weights=False
            )
        finally:
            recomputing = False

    def forward(*args: Any, **kwargs: Any) -> Any:
        if recomputing or not torch.is_grad_enabled():
            return inner(*args, **kwargs)
        # Under the caller's functional_call the slots hold the generated tensors: read them here,
        # hand them to the checkpoint, and so to its recomputation in the backward pass.
        values = tuple(_tensor_at(block, name) for name in names)
        return checkpoint(lambda *v: run(v, args, kwargs), *values, use_reentrant=False)

    block.forward = forward
    block._hyperadapt_checkpointed = True


def slot_tensors(
    config: HyperNetConfig, module_name: str, kind: str
) -> list[tuple[str, tuple[int, ...] | None]]:
    """Parameter names of one module's slot, in the order the generator emits its tensors.

    Each comes with the shape the peft parameter has, where it differs from the generated one.
    """
    if config.adapter == "bottleneck":
        from .bottleneck import adapter_parameter_names

        return [(name, None) for name in adapter_parameter_names(module_name)]
    if config.adapter == "ia3":
        size = config.vector_size(kind)  # peft keeps it as a row (input scaling) or a column
        shape = (1, size) if kind in config.feedforward_kinds else (size, 1)
        return [(f"{module_name}.ia3_l.{ADAPTER_NAME}", shape)]
    return [
        (f"{module_name}.lora_A.{ADAPTER_NAME}.weight", None),
        (f"{module_name}.lora_B.{ADAPTER_NAME}.weight", None),
    ]


class AdaptedModel(nn.Module):
    """The frozen base model with adapter slots that generated weights fill at call time.

    Args:
        base_model: A ``*ForSequenceClassification`` model; it is wrapped (with peft for LoRA and
            (IA)^3, with `BottleneckAdapter` modules for bottleneck adapters) and frozen.
        config: The hypernetwork's (complete) config.

    Example:
        >>> adapted = AdaptedModel(base, hypernet.config)  # doctest: +SKIP
        >>> logits = adapted(*hypernet("rt_sentiment"), **tokenizer(["great film"], return_tensors="pt"))
    """

    def __init__(self, base_model: nn.Module, config: HyperNetConfig):
        super().__init__()
        self.config = config
        if config.adapter == "bottleneck":
            from .bottleneck import inject_bottlenecks

            names = matched_modules(base_model, config.target_modules, config.adapter)
            inject_bottlenecks(base_model, names, config.bottleneck_size, config.bottleneck_activation)
            self.model = base_model
        else:
            from peft import get_peft_model

            self.model = get_peft_model(base_model, lora_config(config))  # LoRA or (IA)^3 slots
        self.model.requires_grad_(False)
        self.model.eval()
        # The frozen weights' precision (training.base_dtype); generated tensors are float32.
        self.base_dtype = base_model.get_input_embeddings().weight.dtype
        # The encoder below the heads (the same modules, adapters included), for hidden states.
        self.backbone = base_model.base_model
        slots = lora_slots(self.model)
        found = {kind: [layer for layer, _, _ in entries] for kind, entries in slots.items()}
        if found != config.module_layers:
            raise HyperAdaptError(
                f"the base model's adapted modules {found} differ from the hypernetwork's "
                f"{config.module_layers}; load it with the base model it was trained for"
            )
        self.param_names = {
            kind: [slot_tensors(config, name, kind) for _, name, _ in entries]
            for kind, entries in slots.items()
        }
        # A causal LM has no task head: the model's own LM head scores the target words.
        self.head_prefix = "" if config.is_causal_lm else f"{self._head_path(config.head_name)}."
        if config.is_causal_lm:
            self._check_logits_from_hidden()
        # Adapter parameter names as the backbone sees them (under peft they sit below
        # base_model.model.{prefix}.).
        wrapper = "base_model.model." if self.model is not base_model else ""
        prefix = f"{base_model.base_model_prefix}."
        self.backbone_names = {
            name: name.removeprefix(wrapper).removeprefix(prefix)
            for slots in self.param_names.values()
            for slot in slots
            for name, _ in slot
        }
        # Token-level tasks run the same backbone (the same modules, adapters included) through
        # the architecture's token-classification model.
        self.token_model = None
        if config.token_head_name:
            self.token_model = token_view(base_model)
            self.token_head_prefix = f"{config.token_head_name}."
            # The token view holds the backbone under its prefix.
            self.token_names = {name: prefix + inner for name, inner in self.backbone_names.items()}

    def enable_gradient_checkpointing(self) -> None:
        """Keep only each adapted block's inputs in the forward pass and recompute the rest in the
        backward pass: less memory for activations, one more forward pass of compute.

        Each block holding adapter slots is run under ``torch.utils.checkpoint`` (non-reentrant)
        with the generated tensors it uses passed in explicitly, so the recomputation sees the same
        adapter as the forward pass (the slots' own frozen placeholders are not what was used).
        Only where gradients are being recorded; evaluation runs the blocks as they are.
        """
        blocks: dict[str, list[str]] = {}
        for entries in lora_slots(self.model).values():
            for _, name, _ in entries:
                block = _block_path(name)
                names = blocks.setdefault(block, [])
                for full, _ in slot_tensors(self.config, name, module_kind(name)):
                    names.append(full.removeprefix(f"{block}."))
        for block, names in blocks.items():
            _checkpoint_block(self.model.get_submodule(block), names)

    @property
    def lm_head(self) -> nn.Module:
        """A causal LM's (frozen) output layer, from hidden states to vocabulary logits."""
        return self.model.get_base_model().get_output_embeddings()

    def target_log_likelihood(
        self, adapters: dict[str, tuple[torch.Tensor, ...]], labels: torch.Tensor, **inputs: Any
    ) -> torch.Tensor:
        """A causal LM's summed log-probability of each row's target tokens (see `causal_lm`)."""
        from .causal_lm import target_log_likelihood

        return target_log_likelihood(self.hidden_states(adapters, **inputs), self.lm_head, labels)

    def target_loss(
        self, adapters: dict[str, tuple[torch.Tensor, ...]], labels: torch.Tensor, **inputs: Any
    ) -> torch.Tensor:
        """A causal LM's mean cross-entropy over the target tokens of a batch."""
        from .causal_lm import target_loss

        return target_loss(self.hidden_states(adapters, **inputs), self.lm_head, labels)

    def _check_logits_from_hidden(self) -> None:
        """Refuse a causal LM whose logits are not its output layer applied to its last hidden states
        (a final soft cap or scale), which target scoring relies on."""
        device = next(self.model.parameters()).device
        ids = torch.tensor([[1, 2, 3, 4]], device=device) % self.lm_head.out_features
        with torch.no_grad():
            full = self.model(input_ids=ids).logits
            direct = self.lm_head(self.backbone(input_ids=ids).last_hidden_state)
        if not torch.allclose(full.float(), direct.float(), atol=1e-4, rtol=1e-4):
            raise HyperAdaptError(
                f"the logits of {type(self.model.get_base_model()).__name__} are not its output layer applied "
                "to its last hidden states (a final soft cap or scale); this causal LM is not supported yet"
            )

    def _head_path(self, head_name: str) -> str:
        for name, _ in self.model.named_modules():
            if name == head_name or name.endswith(f".{head_name}"):
                return name
        raise HyperAdaptError(
            f"the base model has no {head_name!r} head, which the hypernetwork's config.json names; "
            "the config is damaged or from another base model"
        )

    def hidden_states(
        self, adapters: dict[str, tuple[torch.Tensor, torch.Tensor]], **inputs: Any
    ) -> torch.Tensor:
        """The last hidden states ``[batch, tokens, hidden]`` of the backbone run with the given
        adapters (no head): what masked language modelling scores."""
        params = {self.backbone_names[k]: v for k, v in self.parameters_for(adapters, {}).items()}
        if self.config.is_causal_lm:
            inputs = {"use_cache": False, **inputs}  # scoring one pass: no key/value cache to keep
        outputs = functional_call(
            self.backbone, params, args=(), kwargs=inputs, strict=False, tie_weights=False
        )
        return outputs.last_hidden_state

    @property
    def word_embeddings(self) -> torch.Tensor:
        """The base model's (frozen) input word-embedding matrix."""
        return self.backbone.get_input_embeddings().weight

    def train(self, mode: bool = True) -> AdaptedModel:
        # The frozen base always runs in eval mode: its dropout would make generated adapters and
        # exported ones disagree, and it is not what is being trained.
        super().train(mode)
        self.model.eval()
        return self

    def parameters_for(
        self, adapters: dict[str, tuple[torch.Tensor, torch.Tensor]], head: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        params = {}
        # peft keeps LoRA and (IA)^3 weights in float32 on a lower-precision base and casts its
        # inputs; bottleneck adapters and heads compute in the base's precision.
        cast = self.config.adapter == "bottleneck"
        for kind, tensors in adapters.items():
            for i, slot in enumerate(self.param_names[kind]):
                for (name, shape), stacked in zip(slot, tensors, strict=True):
                    tensor = stacked[i] if shape is None else stacked[i].reshape(shape)
                    params[name] = tensor.to(self.base_dtype) if cast else tensor
        for name, tensor in head.items():
            params[self.head_prefix + name] = tensor.to(self.base_dtype)
        return params

    def forward(
        self,
        adapters: dict[str, tuple[torch.Tensor, torch.Tensor]],
        head: dict[str, torch.Tensor],
        per_token: bool = False,
        **inputs: Any,
    ) -> torch.Tensor:
        """Logits of the base model run with the given adapters and head.

        Args:
            per_token: Score every token with a token-classification head (``[batch, tokens,
                labels]``) instead of the sequence (``[batch, labels]``).
        """
        if per_token:
            if self.token_model is None:
                raise HyperAdaptError(
                    "this hypernetwork has no token-classification head (it has no token-level task)"
                )
            params = {self.token_names[k]: v for k, v in self.parameters_for(adapters, {}).items()}
            params.update({self.token_head_prefix + n: t.to(self.base_dtype) for n, t in head.items()})
            model = self.token_model
        else:
            params = self.parameters_for(adapters, head)
            model = self.model
        outputs = functional_call(model, params, args=(), kwargs=inputs, strict=False, tie_weights=False)
        return outputs.logits
