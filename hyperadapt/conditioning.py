"""What the generator is conditioned on: a task's name, its description, a few labelled examples,
its language.

A `Condition` carries the parts that are available for one adapter. The `Conditioner` projects
each part into the condition space and sums them, so any subset works: a seen task by name, an
unseen task by its description, either with k examples, and any of them in a language (a task
seen in some languages, generated for another language seen with other tasks). A `ConditionBuilder` turns a task
(and optionally a new description or examples) into a `Condition`, encoding texts with the
frozen sentence encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import TaskSpec
from .errors import HyperAdaptError

CONDITION_PARTS = ("name", "description", "examples", "language")


@dataclass
class Condition:
    """The inputs that one generated adapter is conditioned on.

    Args:
        task: A task the hypernetwork was trained on, by its key (its group, or else its name): it
            picks the task's own head, and its name embedding when ``use_name``.
        description: ``[text_dim]``, the encoded task description.
        examples: ``[text_dim]``, the mean of encoded ``"text -> label"`` examples.
        labels: ``[num_labels, text_dim]``, encoded label names and descriptions (label-semantic head).
        use_name: Whether the adapter is conditioned on the task's name embedding (False when the
            name part is dropped or the hypernetwork is not conditioned on names).
        language: A language code the hypernetwork was trained on (its language embedding).
    """

    task: str | None = None
    description: torch.Tensor | None = None
    examples: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    use_name: bool = True
    language: str | None = None

    @property
    def uses_name(self) -> bool:
        return self.task is not None and self.use_name


def _projection(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, out_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(out_dim, out_dim)
    )


class Conditioner(nn.Module):
    """Projects each available part of a `Condition` and sums them into one condition vector.

    With no part at all (``conditioning: []``) the condition is a single learned vector, which makes
    the generator an unconditioned, shared multi-task adapter.

    Args:
        parts: The parts this hypernetwork uses, a subset of `CONDITION_PARTS`.
        task_names: The task vocabulary (rows of the name embedding): task keys.
        embedding_dim: Size of a task-name embedding.
        text_dim: Size of the sentence encoder's embeddings.
        condition_dim: Size of the condition.
        dropout: Dropout inside the projections.
        languages: The language vocabulary (rows of the language embedding).
        language_dim: Size of a language embedding.
    """

    def __init__(
        self,
        parts: list[str],
        task_names: list[str],
        embedding_dim: int,
        text_dim: int,
        condition_dim: int,
        dropout: float = 0.0,
        languages: list[str] | None = None,
        language_dim: int = 32,
        description_attention: bool = False,
    ):
        super().__init__()
        self.parts = list(parts)
        self.task_index = {name: i for i, name in enumerate(task_names)}
        self.language_index = {code: i for i, code in enumerate(languages or [])}
        if "name" in self.parts:
            self.task_embedding = nn.Embedding(max(len(task_names), 1), embedding_dim)
            nn.init.normal_(self.task_embedding.weight, std=1.0)
            self.name_projection = _projection(embedding_dim, condition_dim, dropout)
        if "description" in self.parts:
            self.description_projection = _projection(text_dim, condition_dim, dropout)
        if "examples" in self.parts:
            self.examples_projection = _projection(text_dim, condition_dim, dropout)
        if "language" in self.parts:
            self.language_embedding = nn.Embedding(max(len(self.language_index), 1), language_dim)
            nn.init.normal_(self.language_embedding.weight, std=1.0)
            self.language_projection = _projection(language_dim, condition_dim, dropout)
            # A language starts as no change to its task's adapter and learns only the difference
            # its data shows; a pair never trained on then starts from its task's shared adapter.
            nn.init.zeros_(self.language_projection[-1].weight)
            nn.init.zeros_(self.language_projection[-1].bias)
        self.attends = description_attention and "description" in self.parts
        if self.attends:
            # Keys: each training task's mean description encoding (filled from the recipe's
            # descriptions before training, saved with the weights); values: a learned vector per task.
            self.register_buffer("memory_keys", torch.zeros(max(len(task_names), 1), text_dim))
            self.memory_values = nn.Embedding(max(len(task_names), 1), embedding_dim)
            nn.init.normal_(self.memory_values.weight, std=1.0)
            self.memory_projection = _projection(embedding_dim, condition_dim, dropout)
            self.memory_log_temperature = nn.Parameter(torch.tensor(math.log(0.1)))
        self.constant = nn.Parameter(torch.zeros(condition_dim))
        self.norm = nn.LayerNorm(condition_dim)

    @torch.no_grad()
    def set_memory_keys(self, keys: dict[str, torch.Tensor]) -> None:
        """Set each training task's key (by task key) to its mean description encoding."""
        for name, vector in keys.items():
            self.memory_keys[self.task_index[name]] = vector.to(self.memory_keys)

    def attention(self, condition: Condition) -> torch.Tensor:
        """Weights over the training tasks, from the similarity of their descriptions to this one.

        A training task's own key is the closest to its descriptions, so in training each task's
        vector learns what its own task needs; an unseen task's description then draws on the
        vectors of the training tasks it resembles.
        """
        query = nn.functional.normalize(condition.description.to(self.memory_keys), dim=-1)
        scores = nn.functional.normalize(self.memory_keys, dim=-1) @ query
        return torch.softmax(scores / self.memory_log_temperature.exp(), dim=-1)

    def forward(self, condition: Condition) -> torch.Tensor:
        total = self.constant
        if condition.uses_name and "name" in self.parts:
            index = torch.tensor(self.task_index[condition.task], device=self.constant.device)
            total = total + self.name_projection(self.task_embedding(index))
        if condition.description is not None and "description" in self.parts:
            total = total + self.description_projection(condition.description.to(self.constant.device))
            if self.attends:
                mixed = self.attention(condition) @ self.memory_values.weight
                total = total + self.memory_projection(mixed)
        if condition.examples is not None and "examples" in self.parts:
            total = total + self.examples_projection(condition.examples.to(self.constant.device))
        if condition.language is not None and "language" in self.parts:
            if condition.language not in self.language_index:
                raise HyperAdaptError(unknown_language(condition.language, list(self.language_index)))
            index = torch.tensor(self.language_index[condition.language], device=self.constant.device)
            total = total + self.language_projection(self.language_embedding(index))
        return self.norm(total)


def unknown_language(code: str, known: list[str]) -> str:
    close = [k for k in known if k.lower() == code.strip().lower()]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown language {code!r}: this hypernetwork has embeddings for {', '.join(known)} only (the "
        f"languages of its training tasks); use one of them, or train with a task in that language.{hint}"
    )


class ConditionBuilder:
    """Builds the `Condition` of a task for a given hypernetwork config.

    Args:
        config: The hypernetwork's config (its ``conditioning``, ``head``, ``text_encoder`` and
            languages).
        task_names: Tasks the hypernetwork knows, by key (group or name).
        encoder: A `SentenceEncoder`; loaded from ``config.text_encoder`` when needed and not given.

    Example:
        >>> builder = ConditionBuilder(hypernet.config, hypernet.task_keys)  # doctest: +SKIP
        >>> condition = builder.build(spec, description="Is this tweet about sport?")
    """

    def __init__(self, config, task_names: list[str], encoder=None):
        self.parts = list(config.conditioning)
        self.label_semantic = config.label_semantic
        self.open_tasks = config.open_tasks
        self.task_names = set(task_names)
        self.languages = list(config.languages)
        self._encoder = encoder
        self._encoder_name = config.text_encoder

    @property
    def encoder(self):
        if self._encoder is None:
            from .text_encoder import SentenceEncoder

            self._encoder = SentenceEncoder(self._encoder_name)
        return self._encoder

    def labels(self, spec: TaskSpec) -> torch.Tensor | None:
        if not self.label_semantic:
            return None
        from .text_encoder import label_text

        if spec.is_classification:
            texts = [label_text(name, spec.label_descriptions.get(name)) for name in spec.labels]
        else:  # a regression task scores one "label": what the task measures
            texts = [spec.description or spec.name]
        return self.encoder(texts)

    @staticmethod
    def example_texts(spec: TaskSpec, examples: list[dict[str, Any]]) -> list[str]:
        from .text_encoder import example_text

        texts = []
        for ex in examples:
            value = ex["label"]
            if spec.is_token_level:  # "Ada -> B-PER, Lovelace -> I-PER, ..."
                words, tags = ex[spec.text_fields[0]], [spec.labels[int(t)] for t in value]
                texts.append(", ".join(f"{w} -> {t}" for w, t in zip(words, tags, strict=True)))
                continue
            if spec.is_generation:
                label = str(value)
            elif not spec.is_classification:
                label = f"{float(value):.2f}"
            elif isinstance(value, str) and value in spec.labels:
                label = value
            elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(spec.labels):
                label = spec.labels[value]
            else:
                raise HyperAdaptError(
                    f"example label {value!r} is not one of the task's labels {spec.labels} (or their indices)"
                )
            texts.append(example_text(ex, spec.text_fields, label))
        return texts

    def examples(self, spec: TaskSpec, examples: list[dict[str, Any]]) -> torch.Tensor:
        """The mean encoding of labelled examples, the few-shot part of a condition."""
        return self.encoder(self.example_texts(spec, examples)).mean(0)

    def build(
        self,
        spec: TaskSpec,
        description: str | None = None,
        examples: list[dict[str, Any]] | None = None,
        use_name: bool = True,
        language: str | None = None,
    ) -> Condition:
        """The condition for ``spec``: by name if known, by description, and by examples if given,
        in ``language`` (default: the task's own) when the hypernetwork is conditioned on languages.

        Raises:
            HyperAdaptError: when nothing the hypernetwork is conditioned on is available, or the
                language is not one it was trained on.
        """
        if not self.open_tasks and spec.key not in self.task_names:
            raise HyperAdaptError(
                f"task {spec.key!r} is new, but this hypernetwork has one head per training task; train it "
                "with hypernetwork.head: label_semantic to classify tasks it never saw"
                + (
                    f", or, if it is a training task in another language, score it as its group (--group, one "
                    f"of {', '.join(sorted(set(self.task_names)))})"
                    if "language" in self.parts
                    else ""
                )
            )
        condition = Condition(labels=self.labels(spec), use_name=use_name and "name" in self.parts)
        if spec.key in self.task_names:
            condition.task = spec.key  # its head; its name embedding only when use_name
        if "language" in self.parts:
            code = language or spec.language
            if code not in self.languages:
                raise HyperAdaptError(unknown_language(code, self.languages))
            condition.language = code
        elif language is not None:
            raise HyperAdaptError(
                f"this hypernetwork is not conditioned on languages (conditioning: {self.parts}); drop the "
                "language, or train with 'language' in hypernetwork.conditioning"
            )
        text = description if description is not None else spec.description
        if description is not None and not description.strip():
            raise HyperAdaptError("the task description is empty; write what the task is")
        if "description" in self.parts and text:
            if not text.strip():
                raise HyperAdaptError("the task description is empty; write what the task is")
            condition.description = self.encoder([text])[0]
        if "examples" in self.parts and examples:
            condition.examples = self.examples(spec, examples)
        has_any = condition.uses_name or any(
            part is not None for part in (condition.description, condition.examples, condition.language)
        )
        if self.parts and not has_any:
            raise HyperAdaptError(
                f"task {spec.name!r}: this hypernetwork is conditioned on {self.parts}, and none is available; "
                "give a description (or examples), or a task it was trained on"
            )
        return condition


class TrainingConditions:
    """Draws a training step's condition: one of the task's descriptions, k examples, part dropout.

    Args:
        builder: The `ConditionBuilder`.
        specs: The training tasks.
        train_examples: Their training examples (a pool for few-shot conditions is drawn from them).
        condition_dropout: Probability of leaving out each part (at least one is kept).
        shots: The range of k for few-shot conditions, ``(low, high)`` inclusive.
        seed: Seeds the draws.
    """

    def __init__(
        self,
        builder: ConditionBuilder,
        specs: list[TaskSpec],
        train_examples: list[list[dict]],
        condition_dropout: float,
        shots: tuple[int, int],
        seed: int,
        pool_size: int = 64,
    ):
        self.builder = builder
        self.specs = specs
        self.dropout = condition_dropout
        self.shots = shots
        self.rng = np.random.default_rng(seed)
        self.labels = [builder.labels(spec) for spec in specs]
        self.descriptions = [self.descriptions_of(spec) for spec in specs]
        self.pools = []
        for spec, examples in zip(specs, train_examples):
            if "examples" in builder.parts:
                order = np.random.default_rng(seed + 7).permutation(len(examples))[:pool_size]
                pool = [examples[i] for i in order]
                self.pools.append(builder.encoder(builder.example_texts(spec, pool)))
            else:
                self.pools.append(None)
        if "description" in builder.parts:
            self.description_vectors = [builder.encoder(d) for d in self.descriptions]

    def description_keys(self) -> dict[str, torch.Tensor]:
        """Each task key's mean description encoding (tasks of a group pooled)."""
        pooled: dict[str, list[torch.Tensor]] = {}
        for spec, vectors in zip(self.specs, getattr(self, "description_vectors", [])):
            if len(vectors):
                pooled.setdefault(spec.key, []).append(nn.functional.normalize(vectors, dim=-1))
        return {key: torch.cat(v).mean(0) for key, v in pooled.items()}

    @staticmethod
    def descriptions_of(spec: TaskSpec) -> list[str]:
        """A task's distinct, non-blank wordings of its description."""
        texts = [spec.description, *spec.descriptions]
        return [t for t in dict.fromkeys(texts) if t and t.strip()]

    def __call__(self, index: int) -> Condition:
        spec = self.specs[index]
        parts = [p for p in self.builder.parts if p != "description" or self.descriptions[index]]
        keep = [p for p in parts if self.rng.random() >= self.dropout]
        if parts and not keep:
            keep = [parts[int(self.rng.integers(len(parts)))]]
        # The task always picks its own head; its name embedding only when the name part is kept.
        condition = Condition(task=spec.key, labels=self.labels[index], use_name="name" in keep)
        if "language" in keep:
            condition.language = spec.language
        if "description" in keep:
            vectors = self.description_vectors[index]
            condition.description = vectors[int(self.rng.integers(len(vectors)))]
        if "examples" in keep:
            pool = self.pools[index]
            k = int(self.rng.integers(self.shots[0], self.shots[1] + 1))
            rows = self.rng.choice(len(pool), size=min(k, len(pool)), replace=False)
            condition.examples = pool[torch.as_tensor(rows)].mean(0)
        return condition

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
