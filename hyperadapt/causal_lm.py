"""Tasks for a causal language model: each example becomes a prompt and a target text.

With ``model_class: causal_lm`` a classification task is text to text. The prompt holds the
task's instruction (its description and its labels' words, with their meanings) and the input;
the target is the true label's words followed by the end-of-turn token. Training scores the target
tokens only; evaluation ranks the labels by the summed log-likelihood of their target tokens under
the adapted model, so a task with labels never seen needs nothing new.

Where the tokenizer has a chat template (SmolLM2-Instruct has one), the prompt is one user turn and
the answer is the assistant's turn; otherwise it is plain text ending in ``Answer:``. The input
part of the prompt is truncated to fit ``max_length``; the instruction and the answer never are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .data import Task, TaskSpec
from .errors import HyperAdaptError

IGNORE = -100
# Tokens a free-text answer may take (its end of turn included), in training and when generating.
ANSWER_TOKENS = 32
# Marks where the input goes when the chat template renders the turn around it.
_SLOT = "\u2063HYPERADAPT_INPUT\u2063"


def label_words(label: str) -> str:
    """The words a label is written as in a target: ``not_entailment`` -> ``not entailment``."""
    return label.replace("_", " ").strip()


def check_answers(spec: TaskSpec) -> None:
    """Refuse labels a causal LM could not answer with or tell apart: empty words, line breaks or
    control characters, or two labels written as the same words.

    Raises:
        HyperAdaptError: naming the labels and the fix.
    """
    written: dict[str, str] = {}
    for label in spec.labels:
        words = label_words(label)
        if not words:
            raise HyperAdaptError(
                f"task {spec.name!r}: label {label!r} has no words to answer with; name it with letters"
            )
        if any(ch in label for ch in "\n\r\t") or not label.isprintable():
            raise HyperAdaptError(
                f"task {spec.name!r}: label {label!r} holds a line break or control character, which would break "
                "the prompt's list of answers; name it on one line"
            )
        key = " ".join(words.lower().split())
        if key in written:
            raise HyperAdaptError(
                f"task {spec.name!r}: labels {written[key]!r} and {label!r} are both answered as {words!r}, so a "
                "causal LM could not tell them apart; rename one"
            )
        written[key] = label


def instruction(spec: TaskSpec) -> str:
    """The task's instruction: its description, then the labels to answer with and their meanings
    (a text_generation task's answer is free text: its description alone)."""
    head = spec.description.strip() or f"Task: {spec.name.replace('_', ' ')}."
    if spec.is_generation:
        return head
    options = []
    for label in spec.labels:
        meaning = spec.label_descriptions.get(label)
        options.append(f"{label_words(label)} ({meaning.strip()})" if meaning else label_words(label))
    return f"{head}\nAnswer with one of: {'; '.join(options)}."


def input_text(spec: TaskSpec, example: dict[str, Any]) -> str:
    """An example's input: the text, or each field of a pair on its own line under its name."""
    if len(spec.text_fields) == 1:
        return str(example[spec.text_fields[0]])
    return "\n".join(f"{name}: {example[name]}" for name in spec.text_fields)


@dataclass
class PromptFormat:
    """How prompts and targets are laid out for one tokenizer.

    ``before`` and ``after`` surround the input; a target is the label's words and ``end`` (the
    end-of-turn token). `render` gives the full prompt text for any task and input, which is what
    a user of an exported adapter writes before calling ``generate()``.
    """

    chat: bool
    end: str

    @classmethod
    def for_tokenizer(cls, tokenizer) -> PromptFormat:
        end = tokenizer.eos_token or ""
        return cls(chat=bool(getattr(tokenizer, "chat_template", None)), end=end)

    def around(self, tokenizer, spec: TaskSpec) -> tuple[str, str]:
        """The prompt text before and after the input."""
        if self.chat:
            turn = [{"role": "user", "content": f"{instruction(spec)}\n\n{_SLOT}"}]
            rendered = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
            before, _, after = rendered.partition(_SLOT)
            return before, after
        return f"{instruction(spec)}\n\nInput: ", "\nAnswer:"

    def target(self, label: str) -> str:
        return self.answer(label_words(label)) + self.end

    def answer(self, text: str) -> str:
        """Answer words as they follow the prompt (after a space in a plain prompt)."""
        return text if self.chat else f" {text}"

    def render(self, tokenizer, spec: TaskSpec, example: dict[str, Any]) -> str:
        """The whole prompt for one example (what follows it is the answer)."""
        before, after = self.around(tokenizer, spec)
        return before + input_text(spec, example) + after


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class TextToText:
    """Tokenised prompts and targets of one task for one tokenizer (the fixed parts tokenised once).

    Args:
        tokenizer: The causal LM's tokenizer.
        spec: A classification task.
        max_length: Tokens per sequence (prompt and target); the input is cut to fit.
        setting: Where ``max_length`` was set, for messages (``training.max_length``, ``--max-length``),
            or None where it is the model's own limit.
    """

    def __init__(
        self,
        tokenizer,
        spec: TaskSpec,
        max_length: int,
        setting: str | None = "max_length",
        answer_tokens: int = ANSWER_TOKENS,
    ):
        if not (spec.is_classification or spec.is_generation) or spec.is_token_level:
            raise HyperAdaptError(
                f"task {spec.name!r} is {spec.task_type}; a causal LM takes classification and text_generation "
                "tasks (a prompt and the answer's words); use model_class classifier for it"
            )
        check_answers(spec)
        self.tokenizer = tokenizer
        self.spec = spec
        self.format = PromptFormat.for_tokenizer(tokenizer)
        before, after = self.format.around(tokenizer, spec)
        bos = tokenizer.bos_token_id
        # A plain prompt starts as the model's texts start; a chat template writes its own markers.
        self.start = [bos] if bos is not None and not self.format.chat else []
        self.before_text, self.after_text = before, after
        self.before = self.start + _ids(tokenizer, before)
        self.after = _ids(tokenizer, after)
        self.targets = [_ids(tokenizer, self.format.target(label)) for label in spec.labels]
        self.end = _ids(tokenizer, self.format.end)
        # A free-text answer gets up to answer_tokens tokens (the end of the turn included).
        self.answer_tokens = answer_tokens
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise HyperAdaptError(
                f"the tokenizer ({type(tokenizer).__name__}) has neither a padding nor an end token, so "
                "batches of prompts cannot be padded; give it a pad_token"
            )
        self.pad = pad
        answer = max(len(t) for t in self.targets) if self.targets else answer_tokens
        # Two tokens of slack: the prompt is tokenised whole, and its junctions may merge differently.
        fixed = len(self.before) + len(self.after) + answer + 2
        self.budget = max_length - fixed
        if self.budget < 1 and setting is None:
            raise HyperAdaptError(
                f"task {spec.name!r}: its instruction and answers take {fixed} tokens, more than the model's "
                f"{max_length} positions; shorten the description or the labels' meanings"
            )
        if self.budget < 1:
            raise HyperAdaptError(
                f"task {spec.name!r}: its instruction and answer take {fixed} tokens, which leaves no room for "
                f"the input within {setting} {max_length}; set {setting} to {fixed + 64} or more, or "
                "shorten the task's description"
            )

    def prompt(self, example: dict[str, Any]) -> list[int]:
        """Token ids of one example's prompt (its input cut to fit), which the answer follows."""
        # Tokenised whole, as a user's generate() call tokenises before + input + after: byte-level BPE
        # merges whitespace across the junctions, so parts tokenised apart would give other ids.
        text = input_text(self.spec, example)
        ids = _ids(self.tokenizer, text)
        if len(ids) > self.budget:
            text = self.tokenizer.decode(ids[: self.budget])
        return self.start + _ids(self.tokenizer, self.before_text + text + self.after_text)

    def check_answers_fit(self, examples: list[dict[str, Any]]) -> None:
        """Refuse free-text answers longer than ``answer_tokens``: cut, they could never match.

        Raises:
            HyperAdaptError: naming how many answers are too long and the limit.
        """
        room = self.answer_tokens - len(self.end)
        long = [
            ex for ex in examples if len(_ids(self.tokenizer, self.format.answer(str(ex["label"])))) > room
        ]
        if long:
            raise HyperAdaptError(
                f"task {self.spec.name!r}: {len(long)} of {len(examples)} training answers are longer than the "
                f"{room} tokens a free-text answer may take (e.g. {str(long[0]['label'])[:60]!r}...); shorten them"
            )

    def target_ids(self, label: int | str) -> list[int]:
        """A label's answer tokens, or a free-text answer's (cut to ``answer_tokens``), with the end."""
        if isinstance(label, str):
            words = _ids(self.tokenizer, self.format.answer(label))
            return words[: max(1, self.answer_tokens - len(self.end))] + self.end
        return self.targets[label]

    def sequence(self, example: dict[str, Any], label: int | str) -> tuple[list[int], list[int]]:
        """Token ids of prompt + target for one label (an index, or a free-text answer), and their
        labels (``IGNORE`` on the prompt)."""
        prompt = self.prompt(example)
        target = self.target_ids(label)
        return prompt + target, [IGNORE] * len(prompt) + target

    def batch(self, rows: list[tuple[dict[str, Any], int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Right-padded ``input_ids`` and ``attention_mask``, and the labels, of (example, label) rows."""
        pairs = [self.sequence(example, label) for example, label in rows]
        width = max(len(ids) for ids, _ in pairs)
        input_ids = torch.full((len(pairs), width), self.pad, dtype=torch.long)
        attention = torch.zeros((len(pairs), width), dtype=torch.long)
        labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
        for row, (ids, targets) in enumerate(pairs):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            labels[row, : len(ids)] = torch.tensor(targets)
        return {"input_ids": input_ids, "attention_mask": attention}, labels

    def training_batch(self, examples: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Each example with its own label's target (or its free-text answer)."""
        if self.spec.is_generation:
            return self.batch([(ex, str(ex["label"])) for ex in examples])
        return self.batch([(ex, int(ex["label"])) for ex in examples])

    def choices_batch(self, examples: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Each example once per label (example-major), for ranking the labels."""
        return self.batch([(ex, label) for ex in examples for label in range(len(self.spec.labels))])


def target_log_likelihood(hidden: torch.Tensor, lm_head: nn.Module, labels: torch.Tensor) -> torch.Tensor:
    """The summed log-probability of each row's target tokens, ``[rows]``.

    Args:
        hidden: The last hidden states ``[rows, tokens, hidden]``.
        lm_head: The model's output layer (hidden states to vocabulary logits).
        labels: ``[rows, tokens]``, the target tokens and `IGNORE` elsewhere.

    Only the positions that predict a target token go through the output layer, so the logits of
    the whole vocabulary are never held for every position.
    """
    scored = labels[:, 1:] != IGNORE  # position t predicts token t + 1
    rows = torch.arange(len(labels), device=labels.device).unsqueeze(1).expand_as(scored)[scored]
    logits = lm_head(hidden[:, :-1][scored]).float()
    picked = logits.log_softmax(-1).gather(-1, labels[:, 1:][scored].unsqueeze(-1)).squeeze(-1)
    return torch.zeros(len(labels), device=picked.device, dtype=picked.dtype).index_add(0, rows, picked)


def target_loss(hidden: torch.Tensor, lm_head: nn.Module, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the target tokens of a batch (the causal-LM training loss)."""
    scored = labels[:, 1:] != IGNORE
    logits = lm_head(hidden[:, :-1][scored]).float()
    return nn.functional.cross_entropy(logits, labels[:, 1:][scored])


@torch.no_grad()
def evaluate_choices(
    log_likelihood: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor],
    tokenizer,
    task: Task,
    split: str = "validation",
    batch_size: int = 64,
    max_length: int = 128,
    max_examples: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Score a classification task by ranking its labels' likelihoods.

    Args:
        log_likelihood: From a batch's inputs and labels to each row's summed target log-probability.
        batch_size: Sequences per forward pass (each example is one sequence per label).

    Returns:
        Accuracy, macro F1 and MCC of the most likely labels, plus ``n``.
    """
    from .evaluation import batches, scored_examples
    from .metrics import compute_metrics

    examples = scored_examples(task, split, max_examples)
    prompts = TextToText(tokenizer, task.spec, max_length)
    n_labels = len(task.spec.labels)
    preds, refs = [], []
    for chunk in batches(examples, max(1, batch_size // n_labels)):
        inputs, labels = prompts.choices_batch(chunk)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        scores = log_likelihood(inputs, labels.to(device)).reshape(len(chunk), n_labels)
        preds.extend(scores.argmax(-1).tolist())
        refs.extend(int(ex["label"]) for ex in chunk)
    metrics = compute_metrics(task.spec.task_type, preds, refs, task.spec.labels)
    metrics["n"] = len(refs)
    return metrics


@torch.no_grad()
def greedy_answers(
    hidden_states: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    lm_head: nn.Module,
    prompts: TextToText,
    examples: list[dict[str, Any]],
    max_new_tokens: int | None = None,
    device: torch.device | str = "cpu",
) -> list[str]:
    """Each example's answer, written greedily after its prompt until the end of the turn.

    Args:
        hidden_states: From right-padded ``input_ids`` and ``attention_mask`` to the last hidden
            states (the adapted model's, or a peft model's).
        lm_head: The model's output layer.
        max_new_tokens: Default: the answer room of ``prompts`` (``answer_tokens``).

    Without a key/value cache each new token re-reads the whole sequence, so this is for short
    answers; right padding leaves every real position's output as it is unpadded.
    """
    steps = max_new_tokens or prompts.answer_tokens
    rows = [prompts.prompt(ex) for ex in examples]
    written: list[list[int]] = [[] for _ in rows]
    stops = {prompts.end[0]} if len(prompts.end) == 1 else set()
    if prompts.tokenizer.eos_token_id is not None:
        stops.add(prompts.tokenizer.eos_token_id)
    live = list(range(len(rows)))
    for _ in range(steps):
        sequences = [rows[i] + written[i] for i in live]
        width = max(len(ids) for ids in sequences)
        input_ids = torch.full((len(sequences), width), prompts.pad, dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for r, ids in enumerate(sequences):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            attention[r, : len(ids)] = 1
        hidden = hidden_states({"input_ids": input_ids.to(device), "attention_mask": attention.to(device)})
        last = torch.tensor([len(ids) - 1 for ids in sequences], device=hidden.device)
        tokens = lm_head(hidden[torch.arange(len(sequences), device=hidden.device), last]).argmax(-1).tolist()
        still = []
        for i, token in zip(live, tokens, strict=True):
            if token in stops:
                continue
            written[i].append(token)
            if prompts.end and written[i][-len(prompts.end) :] == prompts.end:
                del written[i][-len(prompts.end) :]
                continue
            still.append(i)
        live = still
        if not live:
            break
    return [prompts.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in written]


@torch.no_grad()
def evaluate_generation(
    hidden_states: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    lm_head: nn.Module,
    tokenizer,
    task: Task,
    split: str = "validation",
    batch_size: int = 64,
    max_length: int = 128,
    max_examples: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Score a text_generation task: greedy answers against the references by exact match.

    Returns:
        ``exact_match`` and ``n``.
    """
    from .evaluation import batches, scored_examples
    from .metrics import compute_metrics

    examples = scored_examples(task, split, max_examples)
    prompts = TextToText(tokenizer, task.spec, max_length)
    answers: list[str] = []
    for chunk in batches(examples, max(1, batch_size // 4)):
        answers.extend(greedy_answers(hidden_states, lm_head, prompts, chunk, device=device))
    metrics = compute_metrics(task.spec.task_type, answers, [str(ex["label"]) for ex in examples])
    metrics["n"] = len(examples)
    return metrics


def peft_hidden_states(
    model: nn.Module,
) -> tuple[Callable[[dict[str, torch.Tensor]], torch.Tensor], nn.Module]:
    """The last hidden states (a function of the inputs) and the output layer of a plain
    (peft-wrapped) ``AutoModelForCausalLM``, for `evaluate_generation` and `peft_log_likelihood`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = base.base_model
    return (
        lambda inputs: backbone(**inputs, use_cache=False).last_hidden_state
    ), base.get_output_embeddings()


def peft_log_likelihood(model: nn.Module) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """`evaluate_choices`' scorer for a plain (peft-wrapped) ``AutoModelForCausalLM``."""
    hidden_states, lm_head = peft_hidden_states(model)

    def score(inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return target_log_likelihood(hidden_states(inputs), lm_head, labels)

    return score
