"""Plain peft LoRA trained on one task: the per-task baseline the hypernetwork is compared with."""

from __future__ import annotations

import numpy as np
import torch

from hyperadapt.base_model import load_sequence_classifier, load_tokenizer
from hyperadapt.data import Task
from hyperadapt.evaluation import encode, evaluate_logits_fn, labels_tensor, task_loss


def train_peft_lora(
    task: Task,
    base_model: str = "minilm",
    target_modules: list[str] | None = None,
    rank: int = 8,
    alpha: float = 16.0,
    steps: int = 300,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    max_length: int = 96,
    seed: int = 0,
):
    """Train a peft LoRA (plus the classifier head) on ``task`` alone; returns ``(model, tokenizer)``."""
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    from hyperadapt.base_model import default_target_modules, head_module_name

    torch.manual_seed(seed)
    model = load_sequence_classifier(base_model, num_labels=task.spec.num_outputs)
    targets = target_modules or default_target_modules(model)
    head = head_module_name(model)
    if not task.spec.is_classification:
        # As hyperadapt does: the regression output starts at the mean of the training targets.
        mean = float(np.mean([ex["label"] for ex in task.splits["train"]]))
        with torch.no_grad():
            for name, param in model.get_submodule(head).named_parameters():
                if name.endswith("bias") and list(param.shape) == [1]:
                    param.fill_(mean)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=targets,
        lora_dropout=0.0,
        task_type="SEQ_CLS",
        modules_to_save=[head],
    )
    model = get_peft_model(model, config)
    tokenizer = load_tokenizer(base_model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=int(0.06 * steps), num_training_steps=steps
    )
    rng = np.random.default_rng(seed)
    train = task.splits["train"]
    model.train()
    for _ in range(steps):
        rows = rng.choice(len(train), size=min(batch_size, len(train)), replace=False)
        examples = [train[i] for i in rows]
        logits = model(**encode(tokenizer, task.spec, examples, max_length)).logits
        loss = task_loss(task.spec, logits, labels_tensor(task.spec, examples))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model, tokenizer


def evaluate_peft(model, tokenizer, task: Task, split: str, max_examples: int | None, max_length: int = 96):
    return evaluate_logits_fn(
        lambda inputs: model(**inputs).logits,
        tokenizer,
        task,
        split=split,
        max_examples=max_examples,
        max_length=max_length,
    )
