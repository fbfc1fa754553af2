"""The hypernetwork's configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# What the generator emits: LoRA matrices, (IA)^3 vectors, bottleneck adapters, or nothing (the
# heads-only baseline).
ADAPTER_KINDS = ("lora", "ia3", "bottleneck", "none")
# Where bottleneck adapters sit: after both sub-layers of a block (Houlsby et al., 2019) or after
# the feed-forward sub-layer only (Pfeiffer et al., 2021).
BOTTLENECK_PLACEMENTS = ("houlsby", "pfeiffer")
BOTTLENECK_ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
# What the base model is run as: a classifier (AutoModelForSequenceClassification, and the token
# classifier of the same architecture) or a causal language model (AutoModelForCausalLM), whose
# tasks are prompts and target texts.
MODEL_CLASSES = ("classifier", "causal_lm")


def _help(text: str, default: Any = None, factory: Any = None):
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class HyperNetConfig:
    """Everything needed to rebuild a hypernetwork; saved as ``config.json`` next to its weights.

    The fields under "filled in from the base model" are set by `HyperNetwork.build` and need
    not be written in a recipe.

    Example:
        >>> HyperNetConfig(lora_rank=4, generator_width=64).lora_scaling
        4.0
    """

    base_model: str = _help(
        "Base model: 'minilm' (packaged MiniLM-L6), a local folder or a Hub id.", "minilm"
    )
    base_model_revision: str | None = _help("Hub revision of the base model (None: the default branch).")
    model_class: str = _help(
        "'classifier': the base runs as AutoModelForSequenceClassification (token tasks as its token "
        "classifier) with a generated head; 'causal_lm': the base is a causal LM (AutoModelForCausalLM, "
        "'smollm2' offline), every task is a prompt and a target text, and classification tasks are "
        "scored by the likelihood of each label's words.",
        "classifier",
    )
    target_modules: list[str] | None = _help(
        "Module names (last name component) that get adapters; None finds them from the model.",
    )
    feedforward_modules: list[str] | None = _help(
        "(IA)^3 only: which target modules scale their input rather than their output (peft's "
        "feedforward_modules); None takes peft's table for the model.",
    )
    adapter: str = _help(
        "'lora': generate LoRA adapters; 'ia3': generate (IA)^3 scaling vectors; 'bottleneck': generate "
        "bottleneck adapters (down projection, activation, up projection, residual); 'none': no adapter, the "
        "task heads alone are trained (a baseline).",
        "lora",
    )
    lora_rank: int = _help("Rank r of every generated LoRA adapter.", 8)
    lora_alpha: float = _help("LoRA alpha; the update is scaled by alpha / r.", 16.0)
    bottleneck_size: int = _help("Bottleneck adapters: the width of the down projection.", 8)
    bottleneck_placement: str = _help(
        "Bottleneck adapters: 'houlsby' (after the attention output and the feed-forward output of each "
        "block) or 'pfeiffer' (after the feed-forward output only); ignored when target_modules is set.",
        "houlsby",
    )
    bottleneck_activation: str = _help(
        f"Bottleneck adapters: the non-linearity between the projections, one of {BOTTLENECK_ACTIVATIONS}.",
        "relu",
    )
    generator_chunk_size: int | None = _help(
        "Chunked generation: emit each generated tensor in chunks of this many entries, each chunk "
        "conditioned on a learned chunk embedding, so the output layers do not grow with the adapted "
        "modules' sizes. None emits every tensor whole.",
    )
    chunk_embedding_dim: int = _help("Chunked generation: size of the learned chunk embedding.", 32)
    conditioning: list[str] = _help(
        "What adapters are conditioned on: any of 'name' (a learned embedding per task), 'description' "
        "(the encoded task description), 'examples' (mean encoding of k labelled examples), 'language' (a "
        "learned embedding per language code of the tasks); [] trains one shared, unconditioned adapter.",
        factory=lambda: ["name"],
    )
    head: str = _help(
        "'task': a learned classifier head per training task; 'label_semantic': output rows computed from "
        "the encoded label names and descriptions, so tasks with new labels need no new parameters.",
        "task",
    )
    text_encoder: str = _help("Frozen sentence encoder for descriptions, labels and examples.", "minilm")
    condition_dropout: float = _help(
        "Training only: probability of leaving out each condition part (one is always kept), so any "
        "subset of parts works at generation time.",
        0.0,
    )
    description_attention: bool = _help(
        "Description conditioning also attends over the training tasks: a description's similarity to each "
        "training task's descriptions weights a learned vector per task, added to the condition. A "
        "training task's vector learns what its own task needs; an unseen task's description draws on "
        "the vectors of the training tasks it resembles.",
        False,
    )
    few_shot_range: list[int] = _help(
        "Training only: k of few-shot conditions is drawn from [low, high].", factory=lambda: [4, 16]
    )
    task_embedding_dim: int = _help("Size of the learned embedding of each task name.", 64)
    language_embedding_dim: int = _help("Size of the learned embedding of each language code.", 32)
    condition_dim: int = _help("Size of the task condition after its projection network.", 64)
    layer_embedding_dim: int = _help("Size of the learned layer-id embedding.", 16)
    module_embedding_dim: int = _help("Size of the learned module-type embedding.", 16)
    generator_width: int = _help("Hidden width of the shared generator network.", 128)
    generator_depth: int = _help("Number of hidden layers of the shared generator network.", 2)
    dropout: float = _help("Dropout inside the condition projection and the generator.", 0.0)
    init_b_std: float = _help(
        "Std of the B-head weights at initialisation; small, so first adapters barely change the model.",
        1e-4,
    )
    tasks: list[dict[str, Any]] = _help(
        "Task specs (name, type, labels, ...), in embedding order.", factory=list
    )
    # Filled in from the base model and the text encoder.
    text_dim: int = _help("Size of the text encoder's embeddings.", 0)
    num_layers: int = _help("Number of blocks of the base model that carry adapters.", 0)
    module_shapes: dict[str, list[int]] = _help(
        "For each module kind, [in_features, out_features].", factory=dict
    )
    module_layers: dict[str, list[int]] = _help(
        "For each module kind, the layer indices it sits in.", factory=dict
    )
    feedforward_kinds: list[str] = _help(
        "(IA)^3: the module kinds whose input is scaled (the others scale their output).", factory=list
    )
    head_shapes: dict[str, list[int]] = _help(
        "Shapes of the base model's classifier-head parameters, with the label dimension as -1.", factory=dict
    )
    head_name: str = _help("Attribute name of the base model's classifier head.", "classifier")
    token_head_shapes: dict[str, list[int]] = _help(
        "Token classification: shapes of the token-classification model's head parameters (label "
        "dimension -1); empty without token-level tasks.",
        factory=dict,
    )
    token_head_name: str = _help("Token classification: attribute name of the token head.", "")
    model_type: str = _help("config.model_type of the base model, to catch a mismatched base.", "")
    hidden_size: int = _help("hidden_size of the base model, to catch a mismatched base.", 0)

    def __post_init__(self) -> None:
        positive = (
            "lora_rank",
            "task_embedding_dim",
            "language_embedding_dim",
            "condition_dim",
            "layer_embedding_dim",
            "module_embedding_dim",
            "generator_width",
            "generator_depth",
            "bottleneck_size",
            "chunk_embedding_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        chunk = self.generator_chunk_size
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"generator_chunk_size must be a positive integer or null, got {chunk!r}")
        if self.bottleneck_placement not in BOTTLENECK_PLACEMENTS:
            raise ValueError(
                f"bottleneck_placement must be one of {', '.join(map(repr, BOTTLENECK_PLACEMENTS))}, "
                f"got {self.bottleneck_placement!r}"
            )
        if self.bottleneck_activation not in BOTTLENECK_ACTIVATIONS:
            raise ValueError(
                f"bottleneck_activation must be one of {', '.join(map(repr, BOTTLENECK_ACTIVATIONS))}, "
                f"got {self.bottleneck_activation!r}"
            )
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be a positive number, got {self.lora_alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.init_b_std < 0:
            raise ValueError(f"init_b_std must be >= 0, got {self.init_b_std!r}")
        if not isinstance(self.base_model, str) or not self.base_model:
            raise ValueError(f"base_model must be a model id or path, got {self.base_model!r}")
        if self.target_modules is not None and (
            not isinstance(self.target_modules, list)
            or not self.target_modules
            or not all(isinstance(t, str) and t for t in self.target_modules)
        ):
            raise ValueError(
                f"target_modules must be a non-empty list of names or None, got {self.target_modules!r}"
            )
        if self.target_modules is not None and len(set(self.target_modules)) != len(self.target_modules):
            raise ValueError(f"target_modules lists a module twice: {self.target_modules!r}")
        if self.feedforward_modules is not None:
            if not isinstance(self.feedforward_modules, list) or not all(
                isinstance(t, str) and t for t in self.feedforward_modules
            ):
                raise ValueError(
                    f"feedforward_modules must be a list of names or None, got {self.feedforward_modules!r}"
                )
            if self.adapter != "ia3":
                raise ValueError(
                    "feedforward_modules applies to adapter: ia3 only; drop it or set adapter: ia3"
                )
        from .conditioning import CONDITION_PARTS

        if not isinstance(self.conditioning, list) or any(
            p not in CONDITION_PARTS for p in self.conditioning
        ):
            raise ValueError(
                f"conditioning must be a list of {list(CONDITION_PARTS)}, got {self.conditioning!r}"
            )
        if len(set(self.conditioning)) != len(self.conditioning):
            raise ValueError(f"conditioning lists a part twice: {self.conditioning!r}")
        if self.conditioning == ["language"]:
            raise ValueError(
                "conditioning: [language] alone gives every task of a language the same adapter; "
                "add what names the task: [name, language] or [description, language]"
            )
        if self.adapter not in ADAPTER_KINDS:
            raise ValueError(
                f"adapter must be one of {', '.join(map(repr, ADAPTER_KINDS))}, got {self.adapter!r}"
            )
        if self.head not in ("task", "label_semantic"):
            raise ValueError(f"head must be 'task' or 'label_semantic', got {self.head!r}")
        if self.model_class not in MODEL_CLASSES:
            raise ValueError(
                f"model_class must be one of {', '.join(map(repr, MODEL_CLASSES))}, got {self.model_class!r}"
            )
        if self.model_class == "causal_lm":
            if self.head == "label_semantic":
                raise ValueError(
                    "head: label_semantic applies to model_class classifier; a causal LM scores labels by "
                    "the likelihood of their words, so it needs no head: drop hypernetwork.head"
                )
            if self.adapter != "lora":
                raise ValueError(
                    f"model_class causal_lm generates LoRA adapters; got adapter {self.adapter!r}"
                )
        if not isinstance(self.description_attention, bool):
            raise ValueError(
                f"description_attention must be true or false, got {self.description_attention!r}"
            )
        if self.description_attention and "description" not in self.conditioning:
            raise ValueError(
                "description_attention attends from a task's description: add 'description' to "
                f"hypernetwork.conditioning (now {self.conditioning}) or drop description_attention"
            )
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {self.condition_dropout!r}")
        low_high = self.few_shot_range
        if (
            not isinstance(low_high, list)
            or len(low_high) != 2
            or not all(isinstance(k, int) for k in low_high)
            or not 1 <= low_high[0] <= low_high[1]
        ):
            raise ValueError(f"few_shot_range must be [low, high] with 1 <= low <= high, got {low_high!r}")
        names = [t["name"] for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        self._check_groups()

    def token_task_problem(self) -> str | None:
        """Why these settings cannot train token-classification tasks, if they cannot."""
        if self.head == "label_semantic":
            return (
                "token_classification tasks take a head per task; set hypernetwork.head: task (the "
                "label-semantic head scores whole sequences only)"
            )
        if self.adapter == "bottleneck":
            return "token_classification tasks need adapter lora, ia3 or none (bottleneck adapters are not supported)"
        return None

    def causal_task_problem(self, task_type: str) -> str | None:
        """Why this hypernetwork's model class cannot take a task of this type, if it cannot: a causal
        LM writes answers (classification, free text), a classifier scores with a head."""
        if self.is_causal_lm and task_type not in (
            "sequence_classification",
            "sentence_pair_classification",
            "text_generation",
        ):
            return (
                f"model_class causal_lm takes classification and text_generation tasks (a prompt and the answer's "
                f"words); {task_type} tasks need model_class classifier"
            )
        if not self.is_causal_lm and task_type == "text_generation":
            return "text_generation tasks (free-text answers) need model_class causal_lm, a decoder that writes them"
        return None

    def _check_groups(self) -> None:
        from .data import TaskSpec, group_problem

        problem = group_problem([TaskSpec.from_dict(t) for t in self.tasks])
        if problem:
            raise ValueError(problem)

    @property
    def is_causal_lm(self) -> bool:
        return self.model_class == "causal_lm"

    @property
    def label_semantic(self) -> bool:
        """Whether the head is computed from encoded labels (so labels need encoding)."""
        return self.head == "label_semantic" and not self.is_causal_lm

    @property
    def open_tasks(self) -> bool:
        """Whether tasks never trained on can be generated for (their labels need no learned head)."""
        return self.label_semantic or self.is_causal_lm

    @property
    def uses_text_encoder(self) -> bool:
        """Whether descriptions, examples or labels are encoded (so a text encoder is needed)."""
        return self.label_semantic or bool({"description", "examples"} & set(self.conditioning))

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank

    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.tasks]

    @property
    def task_keys(self) -> list[str]:
        """Rows of the name embedding and the task heads: each task's group (or name), in task order."""
        return list(dict.fromkeys(t.get("group") or t["name"] for t in self.tasks))

    @property
    def languages(self) -> list[str]:
        """Rows of the language embedding: the training tasks' language codes, sorted."""
        return sorted({t.get("language") or "en" for t in self.tasks})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HyperNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown hypernetwork config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def vector_size(self, kind: str) -> int:
        """(IA)^3: the length of a module kind's scaling vector (its input for feed-forward kinds)."""
        in_features, out_features = self.module_shapes[kind]
        return in_features if kind in self.feedforward_kinds else out_features

    def generated_tensors(self, kind: str) -> list[tuple[str, list[tuple[int, ...]]]]:
        """What the generator emits for one module of a kind: output groups and their tensors' shapes.

        Each group is one output head ("a", "b" or "l"); its output is split into the listed
        tensors, in the order the module's slot takes them.
        """
        in_features, out_features = self.module_shapes[kind]
        if self.adapter == "ia3":
            return [("l", [(self.vector_size(kind),)])]
        if self.adapter == "bottleneck":  # down projection (weight, bias), up projection (weight, bias)
            size = self.bottleneck_size
            return [("a", [(size, out_features), (size,)]), ("b", [(out_features, size), (out_features,)])]
        return [("a", [(self.lora_rank, in_features)]), ("b", [(out_features, self.lora_rank)])]

    @classmethod
    def recipe_fields(cls) -> list[str]:
        """The fields a recipe may set (the rest are filled in from the base model and tasks)."""
        derived = {
            "tasks",
            "text_dim",
            "num_layers",
            "module_shapes",
            "module_layers",
            "feedforward_kinds",
            "head_shapes",
            "head_name",
            "token_head_shapes",
            "token_head_name",
            "model_type",
            "hidden_size",
        }
        return [f.name for f in fields(cls) if f.name not in derived]
