"""The hypernetwork: a task condition in, adapter weights for every adapted module out.

One generator serves every (layer, module) pair. Its input is the task condition joined with a
layer-id embedding and a module-kind embedding; a shared network maps it to a feature vector, and
an output head per module kind turns that vector into the adapter's tensors (LoRA ``A`` and
``B``, an (IA)^3 vector, or a bottleneck adapter's projections). The generator's size therefore
depends on the widths of the adapted modules, never on the depth of the base model; with chunked
generation its output heads are shared by all module kinds and emit fixed-size chunks, so it does
not depend on the widths either.
"""

from __future__ import annotations

import dataclasses
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


def _numel(shapes: list[tuple[int, ...]]) -> int:
    return sum(math.prod(shape) for shape in shapes)


def _check_sizes(config: HyperNetConfig, plan: dict[str, list]) -> None:
    """Refuse sizes that make no sense for the adapted modules (and would only exhaust memory)."""
    if config.adapter == "bottleneck":
        narrowest = min(out_f for _, out_f in config.module_shapes.values())
        if config.bottleneck_size > narrowest:
            raise HyperAdaptError(
                f"hypernetwork.bottleneck_size {config.bottleneck_size} is wider than the {narrowest} features of "
                f"the modules it adapts, so it is no bottleneck; set it to {narrowest} or less (8 to 64 is usual)"
            )
    chunk = config.generator_chunk_size
    largest = max(_numel(shapes) for groups in plan.values() for _, shapes in groups)
    if chunk is not None and chunk > largest:
        raise HyperAdaptError(
            f"hypernetwork.generator_chunk_size {chunk} is larger than the largest tensor the generator emits "
            f"({largest} entries); set it to {largest} or less"
        )


class ChunkHead(nn.Module):
    """Chunked output: one chunk of a generated tensor per (features, chunk embedding) pair.

    The chunk's embedding and the trunk's features meet in a hidden layer, so each chunk depends
    on the condition in its own way; the output layer emits ``chunk_size`` entries whatever the
    size of the tensor, which is cut from the concatenated chunks.
    """

    def __init__(self, width: int, chunk_dim: int, chunk_size: int, weight_std: float):
        super().__init__()
        self.chunk_size = chunk_size
        self.features = nn.Linear(width, width)
        self.chunks = nn.Linear(chunk_dim, width, bias=False)
        self.norm = nn.LayerNorm(width)
        self.out = ScaledLinear(width, chunk_size, 1.0 / width, weight_std)

    def forward(self, features: torch.Tensor, chunk_embeddings: torch.Tensor, numel: int) -> torch.Tensor:
        # [rows, 1, width] + [1, chunks, width]: the same as a linear layer over their concatenation.
        hidden = self.features(features).unsqueeze(1) + self.chunks(chunk_embeddings).unsqueeze(0)
        chunks = self.out(self.norm(nn.functional.gelu(hidden)))
        return chunks.flatten(1)[:, :numel]


class ComponentGenerator(nn.Module):
    """The shared generator: (condition, layer id, module kind) -> the adapter tensors of one module.

    LoRA modules get ``A`` and ``B``, (IA)^3 modules a scaling vector, bottleneck modules the
    down and up projections (weights and biases); `HyperNetConfig.generated_tensors` lists them.

    Args:
        config: The hypernetwork config; uses its embedding sizes, generator width and depth, the
            adapter kind and size, the module kinds with their shapes and layers, and
            ``generator_chunk_size`` (chunked output heads shared by all module kinds).
    """

    def __init__(self, config: HyperNetConfig):
        super().__init__()
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
        self.plan = {kind: config.generated_tensors(kind) for kind in self.kinds}
        self.chunk_size = config.generator_chunk_size
        _check_sizes(config, self.plan)
        self.a_heads = nn.ModuleDict()
        self.b_heads = nn.ModuleDict()
        self.l_heads = nn.ModuleDict()
        self.chunk_heads = nn.ModuleDict()
        self.chunk_embeddings = nn.ModuleDict()
        for kind in self.kinds:
            in_features, out_features = config.module_shapes[kind]
            for group, shapes in self.plan[kind]:
                std = self._initial_std(config, group, in_features, out_features)
                if self.chunk_size is None:
                    heads = getattr(self, f"{group}_heads")
                    heads[_key(kind)] = ScaledLinear(width, _numel(shapes), 1.0 / width, std)
                    continue
                # One output head per group, shared by every module kind; the chunk embeddings
                # tell the chunks apart.
                if group not in self.chunk_heads:
                    self.chunk_heads[group] = ChunkHead(
                        width, config.chunk_embedding_dim, self.chunk_size, std
                    )
                table = nn.Embedding(math.ceil(_numel(shapes) / self.chunk_size), config.chunk_embedding_dim)
                nn.init.normal_(table.weight, std=1.0)
                self.chunk_embeddings[f"{_key(kind)}__{group}"] = table
        for i, kind in enumerate(self.kinds):
            self.register_buffer(f"layers_{i}", torch.tensor(config.module_layers[kind]), persistent=False)

    @staticmethod
    def _initial_std(config: HyperNetConfig, group: str, in_features: int, out_features: int) -> float:
        """The std of the generated entries at initialisation, as a weight std of a head of width w.

        ``a`` (LoRA's A, a bottleneck's down projection) starts like a directly initialised
        projection (entries of scale 1/sqrt(fan-in), the trunk's LayerNorm output having unit
        variance); ``b`` (LoRA's B, the up projection) and ``l`` ((IA)^3's offset from 1) start near
        zero, so the first adapters barely move the base model while gradients reach every head.
        """
        if group != "a":
            return config.init_b_std
        fan_in = out_features if config.adapter == "bottleneck" else in_features
        return 1.0 / math.sqrt(fan_in * config.generator_width)

    def _emit(self, kind: str, group: str, features: torch.Tensor, numel: int) -> torch.Tensor:
        if self.chunk_size is None:
            return getattr(self, f"{group}_heads")[_key(kind)](features)
        table = self.chunk_embeddings[f"{_key(kind)}__{group}"]
        return self.chunk_heads[group](features, table.weight, numel)

    def forward(self, condition: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
        """Generate every adapter for one condition.

        Args:
            condition: ``[condition_dim]``, one task's condition.

        Returns:
            For each module kind, its tensors stacked over the layers holding it, in their order:
            LoRA's ``(A [n, r, in], B [n, out, r])``, (IA)^3's ``(l [n, in or out],)``, or a
            bottleneck's ``(down weight [n, b, out], down bias [n, b], up weight [n, out, b], up
            bias [n, out])``.
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
            tensors: list[torch.Tensor] = []
            for group, shapes in self.plan[kind]:
                flat = self._emit(kind, group, feats, _numel(shapes))
                if group == "l":  # (IA)^3 scales start at 1 (the identity) plus a generated offset
                    flat = 1.0 + flat
                sizes = [math.prod(shape) for shape in shapes]
                for part, shape in zip(flat.split(sizes, dim=-1), shapes, strict=True):
                    tensors.append(part.reshape(len(feats), *shape))
            out[kind] = tuple(tensors)
        return out

    def shared_modules(self) -> list[nn.Module]:
        """The parts whose size does not depend on the base model's depth (all but the layer table)."""
        return [self.trunk, self.a_heads, self.b_heads, self.l_heads, self.chunk_heads, self.chunk_embeddings]


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
        # A group's first task stands for the group (tasks of a group share type and labels).
        self.key_index = {}
        for i, spec in enumerate(self.task_specs):
            self.key_index.setdefault(spec.key, i)
        self.conditioner = Conditioner(
            config.conditioning,
            config.task_keys,
            config.task_embedding_dim,
            config.text_dim,
            config.condition_dim,
            config.dropout,
            config.languages,
            config.language_embedding_dim,
            config.description_attention,
        )
        # adapter "none" trains the head alone on the frozen base: the no-adapter baseline.
        self.generator = ComponentGenerator(config) if config.adapter != "none" else None
        self.head: nn.Module | None
        if config.is_causal_lm:  # the base model's own LM head scores the target words
            self.head = None
        elif config.label_semantic:
            self.head = LabelSemanticHead(config.head_shapes, config.text_dim)
        else:
            self.head = TaskHeads(
                config.head_shapes,
                {s.key: s.num_outputs for s in self.task_specs},
                config.token_head_shapes,
                [s.key for s in self.task_specs if s.is_token_level],
            )

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
                    base_model,
                    config.target_modules,
                    config.adapter,
                    config.feedforward_modules,
                    config.bottleneck_placement,
                    token_heads=any(t.is_token_level for t in tasks),
                    causal_lm=config.is_causal_lm,
                ),
                "tasks": [t.to_dict() for t in tasks],
                "text_dim": int(text_dim or 0),
            }
        )
        return cls(filled)

    @property
    def task_keys(self) -> list[str]:
        """What conditions name tasks by: each task's group, or else its name."""
        return list(self.key_index)

    def knows(self, task: str) -> bool:
        """Whether ``task`` names a training task or a group of them."""
        return task in self.task_index or task in self.key_index

    def spec_in(self, task: str, language: str | None = None) -> TaskSpec:
        """The spec of a training task or group in ``language``: the training task of that group and
        language if there is one, else the group's spec renamed ``{group}_{language}``."""
        spec = self.spec(task)
        if language is None or language == spec.language:
            return spec
        for other in self.task_specs:
            if other.key == spec.key and other.language == language:
                return other
        # The group's description is its first task's (in that task's language): it is kept only where
        # it conditions the adapter; otherwise the pair is described as what it is.
        trained_in = sorted({other.language for other in self.task_specs if other.key == spec.key})
        description = (
            spec.description
            if "description" in self.config.conditioning
            else f"Task {spec.key} in language {language}, generated for a pair never trained on "
            f"(the task was trained in {', '.join(trained_in)}): {spec.description}"
        )
        return dataclasses.replace(
            spec,
            name=f"{spec.key}_{language}",
            language=language,
            group=spec.key,
            descriptions=[],
            description=description,
        )

    def spec(self, task: str) -> TaskSpec:
        """A training task's spec, by its name or its group (a group's first task)."""
        if task in self.task_index:
            return self.task_specs[self.task_index[task]]
        if task in self.key_index:
            return self.task_specs[self.key_index[task]]
        import difflib

        known = sorted(set(self.task_index) | set(self.key_index))
        close = difflib.get_close_matches(task, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise HyperAdaptError(f"unknown task {task!r}; this hypernetwork knows {known}.{hint}")

    def _as_condition(self, condition: Condition | str) -> Condition:
        if isinstance(condition, Condition):
            if condition.task is not None:
                self.spec(condition.task)
            return condition
        spec = self.spec(condition)
        if self.config.uses_text_encoder:
            raise HyperAdaptError(
                f"this hypernetwork is conditioned on {self.config.conditioning} with a {self.config.head} head; "
                "build the condition with ConditionBuilder (or use Runtime.condition) instead of a task name"
            )
        language = None
        if "language" in self.config.conditioning:
            if condition not in self.task_index:
                raise HyperAdaptError(
                    f"{condition!r} is a group of tasks in several languages; name one of its tasks, or build "
                    "the condition with a language (ConditionBuilder.build(spec, language=...))"
                )
            language = spec.language
        return Condition(task=spec.key, language=language)

    def forward(
        self, condition: Condition | str, with_head: bool = True
    ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
        """Generate the adapters for a condition and return them with the task head.

        Args:
            condition: A `Condition`, or a training task's name for a name-conditioned hypernetwork.
            with_head: False returns no head (``{}``): for a condition of no task, such as a
                language alone in masked language modelling.

        Returns:
            ``(adapters, head)``: for each module kind ``(A, B)`` stacked over layers, and the head's
            tensors keyed by their names inside the base model's classifier.
        """
        condition = self._as_condition(condition)
        head = self.head(condition) if with_head and self.head is not None else {}
        if self.generator is None:
            return {}, head
        return self.generator(self.conditioner(condition)), head

    def generator_parameters(self) -> int:
        """Parameters of the shared generator trunk and heads (independent of depth)."""
        if self.generator is None:
            return 0
        return sum(p.numel() for m in self.generator.shared_modules() for p in m.parameters())

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
        damaged = sorted(
            name
            for name, tensor in state.items()
            if tensor.is_floating_point() and not tensor.isfinite().all()
        )
        if damaged:
            raise HyperAdaptError(
                f"{model_id}: {WEIGHTS_NAME} holds NaN or infinite values in {damaged[:5]}; the weights are "
                "damaged (or training diverged): load another checkpoint or train again"
            )
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
