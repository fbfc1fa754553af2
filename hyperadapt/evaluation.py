"""Batching examples for the base model, and scoring a task with generated or exported adapters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .data import Task, TaskSpec
from .errors import HyperAdaptError
from .metrics import compute_metrics

IGNORE = -100
"""Label of the sub-word tokens that are not scored: special tokens and all but a word's first piece."""


def _tokenize(tokenizer, spec: TaskSpec, examples: list[dict[str, Any]], max_length: int):
    if spec.is_token_level:
        if not getattr(tokenizer, "is_fast", False):
            raise HyperAdaptError(
                "token classification needs a fast tokenizer (to map sub-words to words); this base "
                "model's tokenizer is a slow one"
            )
        words = [ex[spec.text_fields[0]] for ex in examples]
        try:
            return tokenizer(
                words,
                is_split_into_words=True,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
        except ValueError as err:
            if "add_prefix_space" not in str(err):
                raise
            raise HyperAdaptError(
                f"the base model's tokenizer ({type(tokenizer).__name__}) cannot tokenise word lists: it is a "
                "byte-level BPE tokenizer loaded without add_prefix_space=True; token classification does not "
                "run on this base model yet"
            ) from None
    texts = [[ex[name] for ex in examples] for name in spec.text_fields]
    return tokenizer(*texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def encode(
    tokenizer, spec: TaskSpec, examples: list[dict[str, Any]], max_length: int
) -> dict[str, torch.Tensor]:
    """Tokenise a batch of one task's examples (one text, a pair, or a list of words), padded to the longest."""
    return dict(_tokenize(tokenizer, spec, examples, max_length))


def encode_batch(
    tokenizer, spec: TaskSpec, examples: list[dict[str, Any]], max_length: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The model inputs and the labels of a batch.

    For token classification each word's tag goes to its first sub-word token; the other pieces,
    the special tokens, padding and words cut off by ``max_length`` get `IGNORE`.
    """
    encoding = _tokenize(tokenizer, spec, examples, max_length)
    if not spec.is_token_level:
        return dict(encoding), labels_tensor(spec, examples)
    labels = torch.full(encoding["input_ids"].shape, IGNORE, dtype=torch.long)
    for row, ex in enumerate(examples):
        previous = None
        for position, word in enumerate(encoding.word_ids(row)):
            if word is not None and word != previous:
                labels[row, position] = ex["label"][word]
            previous = word
    return dict(encoding), labels


def labels_tensor(spec: TaskSpec, examples: list[dict[str, Any]]) -> torch.Tensor:
    if spec.is_token_level:
        raise HyperAdaptError("token labels depend on the tokenisation; use encode_batch")
    if spec.is_classification:
        return torch.tensor([ex["label"] for ex in examples], dtype=torch.long)
    return torch.tensor([ex["label"] for ex in examples], dtype=torch.float)


def task_loss(spec: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if spec.is_token_level:
        return nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE
        )
    if spec.is_classification:
        return nn.functional.cross_entropy(logits.float(), labels)
    return nn.functional.mse_loss(logits.float().squeeze(-1), labels)


def batches(examples: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(examples), size):
        yield examples[start : start + size]


def scored_examples(task: Task, split: str, max_examples: int | None = None) -> list[dict[str, Any]]:
    """The examples an evaluation scores: the split's first ``max_examples`` (all if None).

    Raises:
        HyperAdaptError: when the task has no such examples, listing its splits.
    """
    examples = task.splits.get(split) or []
    if not examples:
        raise HyperAdaptError(f"task {task.name!r} has no {split!r} examples; splits: {sorted(task.splits)}")
    return examples[:max_examples] if max_examples else examples


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
    examples = scored_examples(task, split, max_examples)
    preds, refs = [], []
    for chunk in batches(examples, batch_size):
        encoded, labels = encode_batch(tokenizer, task.spec, chunk, max_length)
        inputs = {k: v.to(device) for k, v in encoded.items()}
        logits = logits_fn(inputs)
        if task.spec.is_token_level:  # the tags of the words that fit in max_length
            guesses = logits.argmax(-1).cpu()
            for row in range(len(chunk)):
                scored = labels[row] != IGNORE
                preds.append(guesses[row][scored].tolist())
                refs.append(labels[row][scored].tolist())
        else:
            preds.extend(predictions(task.spec, logits))
            refs.extend(ex["label"] for ex in chunk)
    metrics = compute_metrics(task.spec.task_type, preds, refs, task.spec.labels)
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
        if hypernet.config.is_causal_lm and task.spec.is_generation:  # greedy answers, exact match
            from .causal_lm import evaluate_generation

            return evaluate_generation(
                lambda inputs: adapted.hidden_states(adapters, **inputs),
                adapted.lm_head,
                tokenizer,
                task,
                **kwargs,
            )
        if hypernet.config.is_causal_lm:  # the labels' likelihoods under the adapted causal LM
            from .causal_lm import evaluate_choices

            return evaluate_choices(
                lambda inputs, labels: adapted.target_log_likelihood(adapters, labels, **inputs),
                tokenizer,
                task,
                **kwargs,
            )
        per_token = task.spec.is_token_level
        return evaluate_logits_fn(
            lambda inputs: adapted(adapters, head, per_token=per_token, **inputs), tokenizer, task, **kwargs
        )
    finally:
        hypernet.train(was_training)
