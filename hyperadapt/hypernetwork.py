"""The hypernetwork: a task condition in, LoRA weights for every adapted module out.

One generator serves every (layer, module) pair. Its input is the task condition joined with a
layer-id embedding and a module-kind embedding; a shared network maps it to a feature vector, and
an output head per module kind turns that vector into the LoRA ``A`` and ``B`` matrices. The
generator's size therefore depends on the widths of the adapted modules, never on the depth of
the base model.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from torch import nn

from .conditioning import Condition, Conditioner
from .config import HyperNetConfig
from .data import TaskSpec
from .errors import HyperAdaptError
from .heads import LabelSemanticHead, TaskHeads
from .hub import HyperNetworkHubMixin

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"


def _key(name: str) -> str:
    """Module names hold dots, which `nn.ModuleDict` keys may not."""
    return name.replace(".", "__")


class ScaledLinear(nn.Module):
    """``y = (x W^T) * scale + b``: a linear output head whose weight update is scaled down.

    A generated matrix entry sums ``width`` weight entries, and Adam moves each by about the
    learning rate in a correlated way; without the ``1 / width`` multiplier one step would move
    the generated adapters ``width`` times as far as it moves a directly trained LoRA, and
    training diverges. The bias is left unscaled: it is the task-shared part of the adapter and
    learns at the usual LoRA pace.
    """

    def __init__(self, in_features: int, out_features: int, scale: float, weight_std: float):
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (weight_std / scale))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight) * self.scale + self.bias


class ComponentGenerator(nn.Module):
    """The shared generator: (condition, layer id, module kind) -> LoRA ``A`` and ``B``.

    Args:
        config: The hypernetwork config; uses its embedding sizes, generator width and depth,
            LoRA rank and the module kinds with their shapes and layers.
    """

    def __init__(self, config: HyperNetConfig):
        super().__init__()
        self.rank = config.lora_rank
        # A fixed order (the module-kind embedding rows follow it): a config read back from JSON
        # need not list its kinds in the order they were found.
        self.kinds = sorted(config.module_shapes)
        self.layer_embedding = nn.Embedding(config.num_layers, config.layer_embedding_dim)
        self.module_embedding = nn.Embedding(len(self.kinds), config.module_embedding_dim)
        nn.init.normal_(self.layer_embedding.weight, std=1.0)
        nn.init.normal_(self.module_embedding.weight, std=1.0)

        width = config.generator_width
        layers: list[nn.Module] = []
        in_dim = config.condition_dim + config.layer_embedding_dim + config.module_embedding_dim
        for _ in range(config.generator_depth):
            layers += [nn.Linear(in_dim, width), nn.GELU(), nn.Dropout(config.dropout)]
            in_dim = width
        layers.append(nn.LayerNorm(width))
        self.trunk = nn.Sequential(*layers)

        self.adapter = config.adapter
        self.a_heads = nn.ModuleDict()
        self.b_heads = nn.ModuleDict()
        self.l_heads = nn.ModuleDict()
        scale = 1.0 / width
        for kind in self.kinds:
            in_features, out_features = config.module_shapes[kind]
            if self.adapter == "ia3":
                # One scaling vector per module: 1 + a small generated offset, so the first
                # adapters are close to the identity that (IA)^3 starts from.
                self.l_heads[_key(kind)] = ScaledLinear(
                    width, config.vector_size(kind), scale, config.init_b_std
                )
                continue
            # A starts like a LoRA A (entries of scale 1/sqrt(in), as the trunk's LayerNorm output
            # has unit variance) and B near zero, so the first adapters barely move the base model
            # while gradients still reach both heads.
            a_std = 1.0 / math.sqrt(in_features * width)
            self.a_heads[_key(kind)] = ScaledLinear(width, self.rank * in_features, scale, a_std)
            self.b_heads[_key(kind)] = ScaledLinear(width, out_features * self.rank, scale, config.init_b_std)
        self.shapes = {kind: tuple(shape) for kind, shape in config.module_shapes.items()}
        for i, kind in enumerate(self.kinds):
            self.register_buffer(f"layers_{i}", torch.tensor(config.module_layers[kind]), persistent=False)

    def forward(self, condition: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
        """Generate every adapter for one condition.

        Args:
            condition: ``[condition_dim]``, one task's condition.

        Returns:
            For each module kind, LoRA's ``(A, B)`` of shapes ``[n_layers, r, in]`` and
            ``[n_layers, out, r]``, or (IA)^3's ``(l,)`` of shape ``[n_layers, in or out]``, where
            ``n_layers`` counts the layers holding that kind, in their order.
        """
        rows, spans = [], []
        for i in range(len(self.kinds)):
            layers = getattr(self, f"layers_{i}")
            kind_ids = torch.full_like(layers, i)
            rows.append(
                torch.cat(
                    [
                        condition.expand(len(layers), -1),
                        self.layer_embedding(layers),
                        self.module_embedding(kind_ids),
                    ],
                    dim=-1,
                )
            )
            spans.append(len(layers))
        # One pass of the shared trunk over all (layer, module) pairs.
        features = self.trunk(torch.cat(rows)).split(spans)
        out = {}
        for kind, feats in zip(self.kinds, features):
            if self.adapter == "ia3":
                out[kind] = (1.0 + self.l_heads[_key(kind)](feats),)
                continue
            in_features, out_features = self.shapes[kind]
            a = self.a_heads[_key(kind)](feats).view(-1, self.rank, in_features)
            b = self.b_heads[_key(kind)](feats).view(-1, out_features, self.rank)
            out[kind] = (a, b)
        return out


class HyperNetwork(
    nn.Module,
    HyperNetworkHubMixin,
    library_name="hyperadapt",
    tags=["hyperadapt", "hypernetwork", "lora"],
):
    """Condition-to-adapter generator of LoRA adapters, with task heads.

    Build it for a base model with `HyperNetwork.build`; save and load with
    ``save_pretrained`` / ``from_pretrained`` (config next to safetensors weights, strict load).
    Call it with a `Condition` (or, for a hypernetwork conditioned on task names only, a task
    name) to get ``(adapters, head)``.

    Args:
        config: A complete config (module shapes filled in), as `build` or ``from_pretrained``
            produce.

    Example:
        >>> hypernet = HyperNetwork.build(HyperNetConfig(), tasks, base)  # doctest: +SKIP
        >>> adapters, head = hypernet("rt_sentiment")  # doctest: +SKIP
    """

    def __init__(self, config: HyperNetConfig):
        super().__init__()
        if isinstance(config, dict):
            config = HyperNetConfig.from_dict(config)
        if not config.module_shapes:
            raise ValueError("config.module_shapes is empty: build the hypernetwork with HyperNetwork.build")
        self.config = config
        self.task_specs = [TaskSpec.from_dict(t) for t in config.tasks]
        self.task_index = {spec.name: i for i, spec in enumerate(self.task_specs)}
        self.conditioner = Conditioner(
            config.conditioning,
            self.task_names,
            config.task_embedding_dim,
            config.text_dim,
            config.condition_dim,
            config.dropout,
        )
        # adapter "none" trains the head alone on the frozen base: the no-adapter baseline.
        self.generator = ComponentGenerator(config) if config.adapter != "none" else None
        if config.head == "label_semantic":
            self.head = LabelSemanticHead(config.head_shapes, config.text_dim)
        else:
            self.head = TaskHeads(config.head_shapes, {s.name: s.num_outputs for s in self.task_specs})

    @property
    def task_names(self) -> list[str]:
        return [spec.name for spec in self.task_specs]

    @classmethod
    def build(
        cls, config: HyperNetConfig, tasks: list[TaskSpec], base_model: nn.Module, text_dim: int | None = None
    ) -> HyperNetwork:
        """Fill in the config from the base model and the tasks, and create the hypernetwork.

        Args:
            config: Recipe settings; shapes and layers are taken from ``base_model``.
            tasks: The tasks it is trained on (their order fixes the embedding rows).
            base_model: The frozen ``*ForSequenceClassification`` model.
            text_dim: Size of the text encoder's embeddings (needed for descriptions, examples and
                label-semantic heads).
        """
        from .injection import describe_base_model

        if config.uses_text_encoder and not text_dim:
            raise ValueError("this config uses the text encoder: pass text_dim (SentenceEncoder.dim)")
        filled = HyperNetConfig.from_dict(
            {
                **config.to_dict(),
                **describe_base_model(
                    base_model, config.target_modules, config.adapter, config.feedforward_modules
                ),
                "tasks": [t.to_dict() for t in tasks],
                "text_dim": int(text_dim or 0),
            }
        )
        return cls(filled)

    def spec(self, task: str) -> TaskSpec:
        if task not in self.task_index:
            import difflib

            close = difflib.get_close_matches(task, self.task_index, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise HyperAdaptError(
                f"unknown task {task!r}; this hypernetwork knows {sorted(self.task_index)}.{hint}"
            )
        return self.task_specs[self.task_index[task]]

    def _as_condition(self, condition: Condition | str) -> Condition:
        if isinstance(condition, Condition):
            if condition.task is not None:
                self.spec(condition.task)
            return condition
        self.spec(condition)
        if self.config.uses_text_encoder:
            raise HyperAdaptError(
                f"this hypernetwork is conditioned on {self.config.conditioning} with a {self.config.head} head; "
                "build the condition with ConditionBuilder (or use Runtime.condition) instead of a task name"
            )
        return Condition(task=condition)

    def forward(
        self, condition: Condition | str
    ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
        """Generate the adapters for a condition and return them with the task head.

        Args:
            condition: A `Condition`, or a training task's name for a name-conditioned hypernetwork.

        Returns:
            ``(adapters, head)``: for each module kind ``(A, B)`` stacked over layers, and the head's
            tensors keyed by their names inside the base model's classifier.
        """
        condition = self._as_condition(condition)
        if self.generator is None:
            return {}, self.head(condition)
        return self.generator(self.conditioner(condition)), self.head(condition)

    def generator_parameters(self) -> int:
        """Parameters of the shared generator trunk and heads (independent of depth)."""
        if self.generator is None:
            return 0
        g = self.generator
        shared = [g.trunk, g.a_heads, g.b_heads, g.l_heads]
        return sum(p.numel() for m in shared for p in m.parameters())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # Loading: safetensors only, strict, with a clear message for anything else.
    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir,
        force_download: bool,
        local_files_only: bool,
        token,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs,
    ) -> HyperNetwork:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        config = model_kwargs.pop("config", None)
        if config is None:
            raise HyperAdaptError(f"{model_id}: config.json is missing; it is not a saved hypernetwork")
        model = cls(config)
        weights = _weights_file(model_id, revision, cache_dir, force_download, local_files_only, token)
        try:
            state = load_file(weights, device=map_location)
        except (SafetensorError, OSError, ValueError) as err:
            raise HyperAdaptError(
                f"{model_id}: {WEIGHTS_NAME} is corrupt or truncated ({err}); download or save it again"
            ) from None
        missing, unexpected = model.load_state_dict(state, strict=False)
        if strict and (missing or unexpected):
            raise HyperAdaptError(
                f"{model_id}: weights do not match config.json (missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}); the checkpoint is damaged or from another version"
            )
        return model


def _weights_file(model_id, revision, cache_dir, force_download, local_files_only, token) -> str:
    if os.path.isdir(model_id):
        path = Path(model_id) / WEIGHTS_NAME
        if path.is_file():
            return str(path)
        if (Path(model_id) / "pytorch_model.bin").is_file():
            raise HyperAdaptError(
                f"{model_id} holds only pickled weights (pytorch_model.bin); hyperadapt loads safetensors "
                "only, since pickles can run code. Convert it with safetensors where you trust it."
            )
        raise HyperAdaptError(f"{model_id}: {WEIGHTS_NAME} is missing")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(
            repo_id=model_id,
            filename=WEIGHTS_NAME,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
    except EntryNotFoundError:
        raise HyperAdaptError(
            f"{model_id} has no {WEIGHTS_NAME}; hyperadapt loads safetensors weights only, never pickles"
        ) from None
