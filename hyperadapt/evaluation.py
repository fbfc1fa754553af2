"""Batching examples for the base model, and scoring a task with generated or exported adapters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .data import Task, TaskSpec
from .metrics import compute_metrics


def encode(
    tokenizer, spec: TaskSpec, examples: list[dict[str, Any]], max_length: int
) -> dict[str, torch.Tensor]:
    """Tokenise a batch of one task's examples (one text or a pair), padded to the longest."""
    texts = [[ex[name] for ex in examples] for name in spec.text_fields]
    return dict(tokenizer(*texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))


def labels_tensor(spec: TaskSpec, examples: list[dict[str, Any]]) -> torch.Tensor:
    if spec.is_classification:
        return torch.tensor([ex["label"] for ex in examples], dtype=torch.long)
    return torch.tensor([ex["label"] for ex in examples], dtype=torch.float)


def task_loss(spec: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if spec.is_classification:
        return nn.functional.cross_entropy(logits.float(), labels)
    return nn.functional.mse_loss(logits.float().squeeze(-1), labels)


def batches(examples: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(examples), size):
        yield examples[start : start + size]


def predictions(spec: TaskSpec, logits: torch.Tensor) -> list:
    if spec.is_classification:
        return logits.argmax(-1).tolist()
    return logits.squeeze(-1).float().tolist()


@torch.no_grad()
def evaluate_logits_fn(
    logits_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    tokenizer,
    task: Task,
    split: str = "validation",
    batch_size: int = 64,
    max_length: int = 128,
    max_examples: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Score a task's split with any function from encoded inputs to logits.

    Returns:
        The task's metrics (accuracy, macro F1 and MCC; or Pearson and Spearman), plus ``n``.
    """
    examples = task.splits.get(split) or []
    if not examples:
        from .errors import HyperAdaptError

        raise HyperAdaptError(f"task {task.name!r} has no {split!r} examples; splits: {sorted(task.splits)}")
    if max_examples:
        examples = examples[:max_examples]
    preds, refs = [], []
    for chunk in batches(examples, batch_size):
        inputs = {k: v.to(device) for k, v in encode(tokenizer, task.spec, chunk, max_length).items()}
        preds.extend(predictions(task.spec, logits_fn(inputs)))
        refs.extend(ex["label"] for ex in chunk)
    metrics = compute_metrics(task.spec.task_type, preds, refs)
    metrics["n"] = len(refs)
    return metrics


@torch.no_grad()
def evaluate_hypernetwork(
    hypernet, adapted, tokenizer, task: Task, condition=None, **kwargs: Any
) -> dict[str, float]:
    """Score ``task`` with the adapter the hypernetwork generates for it (generated once).

    Args:
        condition: A `Condition` to generate from; default: the task's name.
    """
    was_training = hypernet.training
    hypernet.eval()
    try:
        adapters, head = hypernet(condition if condition is not None else task.name)
        return evaluate_logits_fn(lambda inputs: adapted(adapters, head, **inputs), tokenizer, task, **kwargs)
    finally:
        hypernet.train(was_training)
