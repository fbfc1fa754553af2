"""Masked language modelling for language embeddings.

A language embedding trained only through the labelled tasks of its language learns what those
tasks need (German sentiment, say), not German. With ``training.language_modelling`` a share of
the steps trains each language's embedding on its own: the adapter generated from the language
alone (no task part) runs the frozen base on masked text of that language, and a small masked-LM
head, tied to the base model's word embeddings, predicts the masked words. The texts are the
inputs of the training tasks in that language (their labels unused), so a pair never trained on,
named entities in German, gets a German embedding that has read German.

The head is a training aid: it is trained beside the hypernetwork and kept in resumable
checkpoints, but it is not part of a saved hypernetwork or an exported adapter.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import DataCollatorForLanguageModeling

from .data import TaskSpec
from .errors import HyperAdaptError
from .sampling import TaskBatches


class MaskedLanguageModelHead(nn.Module):
    """Predicts masked tokens from the adapted base model's hidden states.

    A dense layer, GELU and LayerNorm, then scores against the base model's (frozen) input word
    embeddings plus a learned bias per vocabulary entry, as BERT's pre-training head does.

    Args:
        hidden_size: Width of the base model's hidden states.
        vocab_size: Rows of the word-embedding matrix.
        embedding_size: Width of the word embeddings (default: ``hidden_size``).
    """

    def __init__(self, hidden_size: int, vocab_size: int, embedding_size: int | None = None):
        super().__init__()
        # From the hidden width to the word embeddings' (narrower in ALBERT or ELECTRA).
        self.dense = nn.Linear(hidden_size, embedding_size or hidden_size)
        self.norm = nn.LayerNorm(embedding_size or hidden_size)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """``[tokens, hidden]`` -> ``[tokens, vocab]`` logits."""
        return self.norm(nn.functional.gelu(self.dense(hidden))) @ word_embeddings.t() + self.bias


def task_texts(spec: TaskSpec, examples: list[dict[str, Any]]) -> list[str]:
    """The input texts of a task's examples, labels dropped (a word list is joined by spaces)."""
    texts = []
    for example in examples:
        for name in spec.text_fields:
            value = example[name]
            text = " ".join(value) if isinstance(value, list) else str(value)
            if text.strip():
                texts.append(text)
    return texts


def check_can_mask(tokenizer, base_model: str) -> None:
    """Refuse a base model whose tokenizer has no mask token (a decoder's, say)."""
    if tokenizer.mask_token is None:
        raise HyperAdaptError(
            "training.language_modelling needs a base model whose tokenizer has a mask token (an encoder "
            f"such as BERT or XLM-R); {base_model}'s has none: set it to 0"
        )


class LanguageTexts:
    """Per-language streams of masked-LM batches and the schedule of steps that use them.

    A step ``s`` is a language-modelling step when ``floor(s * share)`` grows at ``s``, so exactly
    ``share`` of the steps are (the schedule needs no state to resume); those steps visit the
    languages in turn.

    Args:
        texts: For each language code, its texts.
        share: Share of all steps, in ``(0, 1)``.
        tokenizer: The base model's tokenizer (it needs a mask token: `check_can_mask`).
        batch_size: Texts per batch, over all processes.
        max_length: Tokens per text.
        seed: Seeds the shuffles and the masks.
        multiple_of: Batch sizes are kept a multiple of this (the number of processes).
        mlm_probability: Share of tokens masked.
    """

    def __init__(
        self,
        texts: dict[str, list[str]],
        share: float,
        tokenizer,
        batch_size: int,
        max_length: int,
        seed: int,
        multiple_of: int = 1,
        mlm_probability: float = 0.15,
    ):
        empty = [code for code, items in texts.items() if len(items) < multiple_of]
        if empty:
            raise HyperAdaptError(f"training.language_modelling: no texts in language(s) {empty}")
        self.languages = sorted(texts)
        self.share = share
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.streams = {
            code: TaskBatches(
                [{"text": t} for t in texts[code]], batch_size, seed + 1000 + i, multiple_of=multiple_of
            )
            for i, code in enumerate(self.languages)
        }
        self.seed = seed
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)

    def language_at(self, step: int) -> str | None:
        """The language step ``step`` (from 1) models, or None for a task step."""
        done = math.floor(step * self.share)
        if done == math.floor((step - 1) * self.share):
            return None
        return self.languages[(done - 1) % len(self.languages)]

    def batch(
        self, code: str, draw: int, rank: int = 0, world: int = 1
    ) -> tuple[dict[str, torch.Tensor], int]:
        """This process's share of the next batch of ``code``, and the number of masked tokens in
        the whole batch (all processes' shares); ``draw`` numbers the batch in the run (the step,
        times the accumulation steps, plus the micro-batch).

        The share holds ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the
        tokenizer makes them) with some tokens masked, and ``labels``: the original ids at masked
        positions, -100 elsewhere. The whole batch is masked at once, from a generator seeded by
        ``draw``, so N processes mask what one process with N times the batch masks, and a
        resumed run masks what the uninterrupted one did.
        """
        texts = [ex["text"] for ex in self.streams[code].next()]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        features = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
        self.collator.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + draw)
        batch = dict(self.collator(features))
        masked = int((batch["labels"] != -100).sum())
        share = len(texts) // world
        return {k: v[rank * share : (rank + 1) * share] for k, v in batch.items()}, masked

    def state_dict(self) -> dict[str, Any]:
        return {code: stream.state_dict() for code, stream in self.streams.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for code, stream in self.streams.items():
            stream.load_state_dict(state[code])


def language_modelling_parts(
    tasks: list, tokenizer, adapted, cfg, seed: int, world: int, log
) -> tuple[LanguageTexts, MaskedLanguageModelHead]:
    """The texts of each training task's language and a fresh masked-LM head for a run.

    Args:
        tasks: The training tasks (`Task`); their training inputs are the texts.
        adapted: The `AdaptedModel` (its word embeddings size the head).
        cfg: The run's `TrainingConfig`.

    Raises:
        HyperAdaptError: when the share gives fewer masked-LM steps than there are languages.
    """
    texts: dict[str, list[str]] = {}
    for task in tasks:
        texts.setdefault(task.spec.language, []).extend(task_texts(task.spec, task.splits["train"]))
    share, steps = cfg.language_modelling, cfg.max_steps
    languages = LanguageTexts(texts, share, tokenizer, cfg.batch_size * world, cfg.max_length, seed, world)
    modelled, needed = math.floor(steps * share), len(languages.languages)
    if modelled < needed:
        raise HyperAdaptError(
            f"training.language_modelling {share} of {steps} steps gives {modelled} masked-LM steps, fewer "
            f"than the {needed} languages; raise it to at least {math.ceil(1000 * needed / steps) / 1000} "
            "or train longer"
        )
    vocab_size, embedding_size = adapted.word_embeddings.shape
    head = MaskedLanguageModelHead(adapted.backbone.config.hidden_size, vocab_size, embedding_size)
    log.info(
        "language modelling: %.0f%% of the steps, masked text in %s (%s texts)",
        100 * share,
        ", ".join(languages.languages),
        ", ".join(str(len(texts[code])) for code in languages.languages),
    )
    return languages, head


def masked_lm_loss(
    head: nn.Module,
    hidden: torch.Tensor,
    labels: torch.Tensor,
    word_embeddings: torch.Tensor,
    total_masked: int,
    world: int = 1,
) -> torch.Tensor:
    """Cross-entropy of the masked positions, summed and divided by the masked tokens of the whole
    batch (times the processes, whose gradients are averaged), so every process's share weighs
    what it holds. Only masked positions are scored (scoring every position would cost the whole
    vocabulary for each token).

    The head runs even on a share with nothing masked (very short texts), on one position times
    zero: every process must take part in the head's gradient exchange.
    """
    masked = labels != -100
    if not masked.any():
        return head(hidden[:, 0], word_embeddings).sum() * 0.0
    logits = head(hidden[masked], word_embeddings)
    summed = nn.functional.cross_entropy(logits.float(), labels[masked], reduction="sum")
    return summed * world / max(total_masked, 1)
