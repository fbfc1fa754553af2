"""Multi-task training of the hypernetwork on ``accelerate``.

Every step draws one task (temperature sampling over task sizes), generates that task's adapters
once, and runs one single-task batch through the frozen base model with them. Only the
hypernetwork and the task heads receive gradients.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base_model import check_inputs_fit, load_sequence_classifier, load_tokenizer
from .conditioning import ConditionBuilder, TrainingConditions
from .errors import HyperAdaptError
from .evaluation import encode, evaluate_hypernetwork, labels_tensor, task_loss
from .files import atomic_dir
from .hypernetwork import HyperNetwork
from .injection import AdaptedModel
from .recipe import Recipe
from .text_encoder import SentenceEncoder

logger = logging.getLogger(__name__)


class TaskSampler:
    """Draws the task of each step: ``p(task) ~ size ** (1 / temperature)``.

    Args:
        sizes: Training examples per task.
        temperature: 1 samples in proportion to size; larger values flatten towards uniform.
        seed: Seeds the sampler's own generator, so every process draws the same sequence.
    """

    def __init__(self, sizes: list[int], temperature: float, seed: int):
        weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
        self.probabilities = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> int:
        return int(self.rng.choice(len(self.probabilities), p=self.probabilities))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class TaskBatches:
    """Endless shuffled single-task batches, reshuffled each epoch from a seeded generator."""

    def __init__(self, examples: list[dict], batch_size: int, seed: int):
        self.examples = examples
        self.batch_size = min(batch_size, len(examples))
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []
        self.position = 0
        self.epoch = 0

    def next(self) -> list[dict]:
        if self.position + self.batch_size > len(self.order):
            self.order = self.rng.permutation(len(self.examples)).tolist()
            self.position = 0
            self.epoch += 1
        chunk = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return [self.examples[i] for i in chunk]

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order,
            "position": self.position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position, self.epoch = state["order"], state["position"], state["epoch"]


@dataclass
class TrainResult:
    """What `train` returns: where things were written and the best validation metrics."""

    output_dir: Path
    hypernetwork_dir: Path
    adapter_dirs: dict[str, Path]
    metrics: dict[str, dict[str, float]]
    baselines: dict[str, float | None]
    best_step: int
    seconds: float


# Files that mark a folder as a training run's, which --overwrite may replace.
RUN_MARKERS = ("metrics.json", "hypernetwork/config.json")


def save_atomically(hypernet: HyperNetwork, target: Path, extra_files: dict[str, str] | None = None) -> None:
    """Write a hypernetwork to a temporary folder beside ``target``, then rename it into place."""
    with atomic_dir(target) as tmp:
        hypernet.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")


def train(
    recipe: Recipe, output_dir: str | Path | None = None, overwrite: bool = False, show_progress: bool = True
) -> TrainResult:
    """Train a hypernetwork as a recipe says; write it, its metrics and one adapter per task.

    Args:
        recipe: From `hyperadapt.recipe.load_recipe`.
        output_dir: Overrides ``recipe.output_dir``.
        overwrite: Replace an existing, non-empty output folder.
        show_progress: Show a tqdm bar (main process only).

    Example:
        >>> result = train(load_recipe("recipes/quickstart.yaml"))  # doctest: +SKIP
        >>> result.metrics["rt_sentiment"]["accuracy"]
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm
    from transformers import get_scheduler

    from .export import check_output_folder, export_lora_adapter

    start = time.perf_counter()
    out = Path(output_dir or recipe.output_dir)
    cfg = recipe.training
    # Everything that can fail on user input happens before anything is written, and the run is
    # written to a temporary folder that is renamed into place once complete.
    check_output_folder(out, overwrite, "--output-dir", RUN_MARKERS, "a training run")
    tasks = recipe.load_tasks()
    held_out = recipe.load_held_out()
    hyper_cfg = recipe.hypernetwork
    base = load_sequence_classifier(hyper_cfg.base_model, revision=hyper_cfg.base_model_revision)
    tokenizer = load_tokenizer(hyper_cfg.base_model, revision=hyper_cfg.base_model_revision)
    check_inputs_fit(base, tokenizer, cfg.max_length, "training.max_length")

    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
    )
    set_seed(recipe.seed)
    encoder = (
        SentenceEncoder(hyper_cfg.text_encoder).to(accelerator.device)
        if hyper_cfg.uses_text_encoder
        else None
    )
    hypernet = HyperNetwork.build(
        hyper_cfg, [t.spec for t in tasks], base, text_dim=encoder.dim if encoder else None
    )
    builder = ConditionBuilder(hypernet.config, hypernet.task_names, encoder)
    conditions = TrainingConditions(
        builder,
        [t.spec for t in tasks],
        [t.splits["train"] for t in tasks],
        hyper_cfg.condition_dropout,
        tuple(hyper_cfg.few_shot_range),
        recipe.seed + 100,
    )
    eval_conditions = {t.name: builder.build(t.spec) for t in tasks}
    # Held-out tasks are generated from their description and labels alone (zero-shot); they are
    # reported, never used to pick the checkpoint.
    eval_conditions.update({t.name: builder.build(t.spec) for t in held_out})
    adapted = AdaptedModel(base, hypernet.config).to(accelerator.device)
    logger.info(
        "hypernetwork: %s parameters (%s in the shared generator); %d tasks; base %s with %d adapted modules",
        f"{hypernet.num_parameters():,}",
        f"{hypernet.generator_parameters():,}",
        len(tasks),
        hyper_cfg.base_model,
        sum(len(v) for v in hypernet.config.module_layers.values()),
    )

    optimizer = torch.optim.AdamW(hypernet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.max_steps
    )
    model, optimizer, scheduler = accelerator.prepare(hypernet, optimizer, scheduler)

    sampler = TaskSampler([len(t.splits["train"]) for t in tasks], cfg.temperature, recipe.seed)
    streams = [
        TaskBatches(t.splits["train"], cfg.batch_size, recipe.seed + 1 + i) for i, t in enumerate(tasks)
    ]
    # On the very examples each evaluation scores (the first max_eval_examples).
    baselines = {t.name: t.majority_baseline(max_examples=cfg.max_eval_examples) for t in [*tasks, *held_out]}
    eval_kwargs = {
        "batch_size": cfg.eval_batch_size,
        "max_length": cfg.max_length,
        "max_examples": cfg.max_eval_examples,
        "device": accelerator.device,
    }

    def run_eval(step: int) -> tuple[float, dict[str, dict[str, float]]]:
        unwrapped = accelerator.unwrap_model(model)
        metrics = {
            t.name: evaluate_hypernetwork(
                unwrapped, adapted, tokenizer, t, eval_conditions[t.name], **eval_kwargs
            )
            for t in tasks
        }
        score = float(np.mean([metrics[t.name][t.spec.main_metric] for t in tasks]))
        table = ", ".join(
            f"{t.name} {t.spec.main_metric}={metrics[t.name][t.spec.main_metric]:.3f}" for t in tasks
        )
        logger.info("step %d validation: %s (mean %.3f)", step, table, score)
        for t in held_out:
            metrics[t.name] = evaluate_hypernetwork(
                unwrapped, adapted, tokenizer, t, eval_conditions[t.name], **eval_kwargs
            )
            metrics[t.name]["zero_shot"] = True
        if held_out:
            logger.info(
                "step %d zero-shot on held-out tasks: %s",
                step,
                ", ".join(
                    f"{t.name} {t.spec.main_metric}={metrics[t.name][t.spec.main_metric]:.3f}"
                    for t in held_out
                ),
            )
        return score, metrics

    best_score, best_metrics, best_step, best_state = -math.inf, {}, 0, None
    eval_every = cfg.eval_every or cfg.max_steps
    progress = tqdm(
        total=cfg.max_steps, desc="training", disable=not (show_progress and accelerator.is_main_process)
    )
    # Log lines go above the progress bar instead of into it.
    with logging_redirect_tqdm():
        running, seen = 0.0, 0
        model.train()
        for step in range(1, cfg.max_steps + 1):
            for _ in range(cfg.gradient_accumulation_steps):
                with accelerator.accumulate(model):
                    index = sampler()
                    task = tasks[index]
                    examples = streams[index].next()
                    inputs = {
                        k: v.to(accelerator.device)
                        for k, v in encode(tokenizer, task.spec, examples, cfg.max_length).items()
                    }
                    labels = labels_tensor(task.spec, examples).to(accelerator.device)
                    with accelerator.autocast():
                        adapters, head = model(conditions(index))
                        logits = adapted(adapters, head, **inputs)
                        loss = task_loss(task.spec, logits, labels)
                    if not torch.isfinite(loss):
                        raise HyperAdaptError(
                            f"step {step}: the loss on task {task.name!r} is {loss.item()}; lower "
                            "training.learning_rate or check the task's labels"
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            running += loss.item()
            seen += 1
            progress.update(1)
            if step % cfg.log_every == 0:
                progress.set_postfix(loss=f"{running / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                logger.debug("step %d loss %.4f", step, running / seen)
                running, seen = 0.0, 0
            if step % eval_every == 0 or step == cfg.max_steps:
                score, metrics = run_eval(step)
                if score > best_score:
                    best_score, best_metrics, best_step = score, metrics, step
                    best_state = {
                        k: v.detach().cpu().clone()
                        for k, v in accelerator.unwrap_model(model).state_dict().items()
                    }
        progress.close()

    hypernet = accelerator.unwrap_model(model)
    if best_state is not None:
        hypernet.load_state_dict(best_state)
    hypernet_dir = out / "hypernetwork"
    adapter_dirs: dict[str, Path] = {}
    if accelerator.is_main_process:
        hypernet.to("cpu")
        import yaml

        from .cards import hypernetwork_card

        recipe_text = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
        card = hypernetwork_card(
            hypernet, best_metrics, recipe_text, baselines=baselines, best_step=best_step
        )
        check_output_folder(out, overwrite, "--output-dir", RUN_MARKERS, "a training run")  # again
        # The whole run goes to a temporary folder that replaces the output folder once complete.
        with atomic_dir(out) as tmp:
            save_atomically(
                hypernet, tmp / "hypernetwork", {"recipe.yaml": recipe_text, "README.md": card.content}
            )
            if recipe.export_adapters:
                for t in tasks:
                    export_lora_adapter(
                        hypernet,
                        t.name,
                        tmp / "adapters" / t.name,
                        condition=eval_conditions[t.name],
                        metrics=best_metrics.get(t.name),
                        hypernetwork_ref=str(hypernet_dir),
                    )
                    adapter_dirs[t.name] = out / "adapters" / t.name
            summary = {
                "best_step": best_step,
                "validation": best_metrics,
                "majority_baseline": baselines,
                "train_examples": {t.name: len(t.splits["train"]) for t in tasks},
                "seconds": round(time.perf_counter() - start, 1),
            }
            (tmp / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        logger.info("wrote the hypernetwork, %d adapters and metrics.json to %s", len(adapter_dirs), out)
    accelerator.wait_for_everyone()
    return TrainResult(
        out, hypernet_dir, adapter_dirs, best_metrics, baselines, best_step, time.perf_counter() - start
    )
