"""Multi-task training of the hypernetwork on ``accelerate``.

Every step draws one task (temperature sampling over task sizes), generates that task's adapters
once, and runs one single-task batch through the frozen base model with them. Only the
hypernetwork and the task heads receive gradients.

Data parallel: every process draws the same task, the same condition and the same global batch
(all samplers share their seeds), and trains on its own equal share of that batch; gradients are
averaged across processes. So a step of N processes with ``batch_size`` B computes what one
process computes with ``batch_size`` N x B, and each step still holds one task.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base_model import check_inputs_fit, load_base, load_tokenizer
from .cards import kind_name
from .causal_lm import TextToText
from .checkpoints import (
    CHECKPOINTS,
    LOGS,
    METRICS_FILE,
    OUTPUTS,
    STATE_FORMAT,
    check_same_data,
    check_same_recipe,
    check_same_world,
    check_shared_folder,
    list_checkpoints,
    load_best,
    load_checkpoint,
    read_state,
    resume_point,
    save_checkpoint,
)
from .conditioning import Condition, ConditionBuilder, TrainingConditions
from .data import group_problem, language_problem
from .errors import HyperAdaptError
from .evaluation import encode_batch, evaluate_hypernetwork, task_loss
from .files import RunLock, atomic_dir
from .heads import TaskHeads
from .hypernetwork import HyperNetwork
from .injection import AdaptedModel
from .language_modelling import check_can_mask, language_modelling_parts, masked_lm_loss
from .recipe import Recipe
from .sampling import TaskBatches, TaskSampler
from .text_encoder import SentenceEncoder

logger = logging.getLogger(__name__)
_other_ranks = logging.getLogger(f"{__name__}.other_ranks")
_other_ranks.setLevel(logging.ERROR)


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
    world_size: int = 1
    process_index: int = 0
    resumed_from: Path | None = None
    hypernetwork: HyperNetwork | None = None
    main_metrics: dict[str, str] = field(default_factory=dict)


# The package each accelerate tracker needs.
TRACKER_MODULES = {"tensorboard": "tensorboard", "comet_ml": "comet_ml", "clearml": "clearml"}


def save_atomically(hypernet: HyperNetwork, target: Path, extra_files: dict[str, str] | None = None) -> None:
    """Write a hypernetwork to a temporary folder beside ``target``, then rename it into place."""
    with atomic_dir(target) as tmp:
        hypernet.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")


def _data_digest(tasks: list) -> str:
    """A digest of every training task: what it is (description, labels, ...) and its examples."""
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(json.dumps(asdict(task.spec), sort_keys=True, default=str).encode())
        digest.update(json.dumps(task.splits["train"], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _fingerprint(recipe_dict: dict[str, Any], data_digest: str) -> str:
    """A digest of the recipe and the training data, equal on processes that run the same job."""
    text = json.dumps(recipe_dict, sort_keys=True, default=str) + data_digest
    return hashlib.sha256(text.encode()).hexdigest()


def _tracker_config(recipe_dict: dict[str, Any]) -> dict[str, Any]:
    """The recipe flattened to the scalar values trackers accept (lists and mappings as JSON)."""
    flat: dict[str, Any] = {}
    for section, value in recipe_dict.items():
        if section in ("tasks", "held_out"):
            flat[section] = ", ".join(
                str(t.get("builtin") or t.get("folder") or t.get("dataset")) for t in value
            )
        elif isinstance(value, dict):
            for key, item in value.items():
                flat[f"{section}.{key}"] = (
                    item if isinstance(item, (int, float, str, bool)) else json.dumps(item)
                )
        else:
            flat[section] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


@torch.no_grad()
def adapter_norm(hypernet: HyperNetwork, condition) -> float:
    """Frobenius norm of the weight update ``B @ A`` a condition generates, over all adapted modules."""
    adapters, _head = hypernet(condition)
    total = 0.0
    for a, b in adapters.values():
        total += float(torch.linalg.matrix_norm(b.float() @ a.float()).square().sum())
    return math.sqrt(total)


def train(
    recipe: Recipe,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    resume: str | None = None,
) -> TrainResult:
    """Train a hypernetwork as a recipe says; write it, its metrics and one adapter per task.

    Runs on one process, or on several under ``accelerate launch`` (data parallel, see the module
    docstring).

    Args:
        recipe: From `hyperadapt.recipe.load_recipe`.
        output_dir: Overrides ``recipe.output_dir``.
        overwrite: Replace an existing, non-empty output folder.
        show_progress: Show a tqdm bar (main process only).
        resume: ``"latest"`` or a checkpoint folder: continue the run from there (the recipe must
            be the one the run started with). With ``"latest"`` and no checkpoint yet, the run
            starts from step 0.

    Example:
        >>> result = train(load_recipe("recipes/quickstart.yaml"))  # doctest: +SKIP
        >>> result.metrics["rt_sentiment"]["accuracy"]
    """
    start = time.perf_counter()
    out = Path(output_dir or recipe.output_dir)
    lock = RunLock(out)
    try:
        return _train(recipe, out, overwrite, show_progress, resume, start, lock)
    finally:
        lock.release()


def _train(
    recipe: Recipe,
    out: Path,
    overwrite: bool,
    show_progress: bool,
    resume: str | None,
    start: float,
    lock: RunLock,
) -> TrainResult:
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration, gather_object, set_seed
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm
    from transformers import get_scheduler

    from .export import export_adapter

    cfg = recipe.training
    recipe_dict = recipe.to_dict()
    checkpoint = resume_point(out, resume, overwrite)
    saved = read_state(checkpoint) if checkpoint is not None else None
    # A resumed run reports the time of all its parts.
    earlier_seconds = saved.get("seconds", 0.0) if saved is not None else 0.0
    if isinstance(earlier_seconds, bool) or not isinstance(earlier_seconds, (int, float)):
        earlier_seconds = 0.0
    if saved is not None:
        check_same_recipe(checkpoint, saved, recipe_dict)
    for tracker in cfg.report_to:
        module = TRACKER_MODULES.get(tracker, tracker)
        if importlib.util.find_spec(module) is None:
            extra = ' (pip install "hyperadapt[tensorboard]")' if tracker == "tensorboard" else ""
            raise HyperAdaptError(
                f"training.report_to: {tracker} is not installed; pip install {module}{extra}, or drop it"
            )
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise HyperAdaptError("training.mixed_precision 'fp16' needs a GPU; on CPU use 'bf16' or 'no'")
    if cfg.base_dtype == "float16" and not torch.cuda.is_available():
        raise HyperAdaptError("training.base_dtype 'float16' needs a GPU; on CPU use 'bfloat16' or 'float32'")
    tasks = recipe.load_tasks()
    held_out = recipe.load_held_out()
    for t in [*tasks, *held_out]:
        problem = recipe.hypernetwork.causal_task_problem(t.spec.task_type)
        if problem:
            raise HyperAdaptError(f"recipe: task {t.name!r}: {problem}")
    token_tasks = [t.name for t in [*tasks, *held_out] if t.spec.is_token_level]
    problem = recipe.hypernetwork.token_task_problem() if token_tasks else None
    if problem:
        raise HyperAdaptError(f"recipe: {problem} ({', '.join(token_tasks)})")
    problem = group_problem([t.spec for t in [*tasks, *held_out]])
    if problem:  # a held-out task of a training group is scored with the group's head
        raise HyperAdaptError(f"recipe held_out: {problem}")
    problem = language_problem([t.spec for t in tasks], [t.spec for t in held_out])
    if problem and "language" in recipe.hypernetwork.conditioning:
        raise HyperAdaptError(f"recipe held_out: {problem}")
    if "description" in recipe.hypernetwork.conditioning:
        undescribed = [t.name for t in tasks if not TrainingConditions.descriptions_of(t.spec)]
        if undescribed:
            raise HyperAdaptError(
                f"tasks {undescribed} have no description, but hypernetwork.conditioning has 'description': "
                'write a "description" in their task.json or a descriptions: list in their recipe entry, or '
                "drop 'description' from hypernetwork.conditioning"
            )
    data_digest = _data_digest(tasks)
    if saved is not None:
        check_same_data(checkpoint, saved, data_digest, [len(t.splits["train"]) for t in tasks])
    hyper_cfg = recipe.hypernetwork
    base = load_base(hyper_cfg, dtype=getattr(torch, cfg.base_dtype))
    tokenizer = load_tokenizer(hyper_cfg.base_model, revision=hyper_cfg.base_model_revision)
    check_inputs_fit(base, tokenizer, cfg.max_length, "training.max_length")
    if cfg.language_modelling:
        check_can_mask(tokenizer, hyper_cfg.base_model)
    # Each run sets up accelerate afresh: its settings (mixed precision, say) live in process-wide
    # singletons that a previous run in this process, or a forked parent, would otherwise leave.
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        # The schedule counts optimiser steps, whatever the number of processes.
        step_scheduler_with_optimizer=False,
        log_with=cfg.report_to or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / LOGS)),
        # Each step trains one task's head and, with condition dropout, some condition parts only.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    # Every process computes the same numbers; only the main one reports them.
    log = logger if accelerator.is_main_process else _other_ranks
    world, rank = accelerator.num_processes, accelerator.process_index
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != world:
        raise HyperAdaptError(
            f"this job was launched as {launched} processes, but accelerate formed a job of {world}: on a "
            "machine without GPUs use `accelerate launch --multi_gpu --num_processes N` (the processes "
            "then join on gloo) or torchrun; `--cpu --num_processes N` starts one process"
        )
    problem = None
    if accelerator.is_main_process:  # the job's main process holds the output folder
        try:
            lock.acquire()
        except OSError:
            problem = (
                f"another training run (process {lock.holder or '?'}) is writing to {out}; wait for it "
                "to finish or stop it (under accelerate launch, stop its worker processes too)"
            )
        else:
            try:  # once more, now that no other run can change the folder
                if resume_point(out, resume, overwrite) != checkpoint:
                    problem = f"the checkpoints in {out} changed while this run started; run it again"
            except HyperAdaptError as err:
                problem = str(err)
    problems = [p for p in gather_object([problem]) if p]
    if problems:
        raise HyperAdaptError(problems[0])
    fingerprints = gather_object([_fingerprint(recipe_dict, data_digest)])
    if len(set(fingerprints)) > 1:
        raise HyperAdaptError(
            f"the {world} processes of this job do not run the same recipe and data (they differ between "
            f"ranks {[i for i, f in enumerate(fingerprints) if f != fingerprints[0]]} and 0); give every "
            "process the same recipe, overrides and task files"
        )
    starts = gather_object([str(checkpoint) if checkpoint is not None else "step 0"])
    if len(set(starts)) > 1:
        raise HyperAdaptError(
            f"the processes of this job would resume from different points ({sorted(set(starts))}); give "
            "them one output folder on a shared file system, or name the checkpoint with --resume PATH"
        )
    if saved is not None:
        check_same_world(checkpoint, saved, world)
    if world > 1 and cfg.save_every:
        check_shared_folder(accelerator, out / CHECKPOINTS)
    small = [t.name for t in tasks if len(t.splits["train"]) < world]
    if small:
        raise HyperAdaptError(
            f"tasks {small} have fewer training examples than the {world} processes (each process takes "
            "a share of every batch); give them more examples or run fewer processes"
        )
    log.info(
        "world size %d (%s); per process %d examples a batch, global batch %d x %d accumulation steps; "
        "mixed precision %s",
        world,
        "one process" if world == 1 else f"{accelerator.distributed_type.value}, {accelerator.state.backend}",
        cfg.batch_size,
        cfg.batch_size * world,
        cfg.gradient_accumulation_steps,
        accelerator.mixed_precision,
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
    if isinstance(hypernet.head, TaskHeads):
        for task in tasks:
            if not task.spec.is_classification:
                targets = [float(ex["label"]) for ex in task.splits["train"]]
                hypernet.head.start_regression_at(task.spec.key, sum(targets) / len(targets))
    builder = ConditionBuilder(hypernet.config, hypernet.task_keys, encoder)
    conditions = TrainingConditions(
        builder,
        [t.spec for t in tasks],
        [t.splits["train"] for t in tasks],
        hyper_cfg.condition_dropout,
        tuple(hyper_cfg.few_shot_range),
        recipe.seed + 100,
    )
    if hypernet.conditioner.attends:
        hypernet.conditioner.set_memory_keys(conditions.description_keys())
    eval_conditions = {t.name: builder.build(t.spec) for t in tasks}
    # Held-out tasks are generated from their description and labels alone (zero-shot); they are
    # reported, never used to pick the checkpoint.
    eval_conditions.update({t.name: builder.build(t.spec) for t in held_out})
    adapted = AdaptedModel(base, hypernet.config).to(accelerator.device)
    if cfg.gradient_checkpointing:
        adapted.enable_gradient_checkpointing()
    # A causal LM's tasks are prompts and targets, their fixed parts tokenised once per task.
    prompts = (
        [TextToText(tokenizer, t.spec, cfg.max_length, "training.max_length") for t in tasks]
        if hyper_cfg.is_causal_lm
        else None
    )
    if hyper_cfg.is_causal_lm:  # held-out prompts must fit too, before anything trains
        for t in held_out:
            TextToText(tokenizer, t.spec, cfg.max_length, "training.max_length")
        for t, prompt in zip(tasks, prompts, strict=True):
            if t.spec.is_generation:
                prompt.check_answers_fit(t.splits["train"])
    log.info(
        "hypernetwork: %s parameters (%s in the shared generator); %d tasks; base %s with %d adapted modules (%s)",
        f"{hypernet.num_parameters():,}",
        f"{hypernet.generator_parameters():,}",
        len(tasks),
        hyper_cfg.base_model,
        sum(len(v) for v in hypernet.config.module_layers.values()),
        kind_name(hypernet.config) if hyper_cfg.adapter != "none" else "none: heads only",
    )

    languages = lm_head = None
    if cfg.language_modelling:
        if accelerator.state.deepspeed_plugin is not None:
            raise HyperAdaptError(
                "training.language_modelling trains a second module beside the hypernetwork, which this "
                "DeepSpeed setup does not take; set it to 0 or launch without DeepSpeed"
            )
        languages, lm_head = language_modelling_parts(tasks, tokenizer, adapted, cfg, recipe.seed, world, log)
    trained = [*hypernet.parameters(), *(lm_head.parameters() if lm_head is not None else [])]
    optimizer = torch.optim.AdamW(trained, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.max_steps
    )
    if accelerator.state.deepspeed_plugin is not None:
        # No dataloader goes through prepare, so DeepSpeed is told the batch size here.
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
    if lm_head is not None:
        model, lm_head, optimizer, scheduler = accelerator.prepare(hypernet, lm_head, optimizer, scheduler)
    else:
        model, optimizer, scheduler = accelerator.prepare(hypernet, optimizer, scheduler)

    sampler = TaskSampler([len(t.splits["train"]) for t in tasks], cfg.temperature, recipe.seed)
    streams = [
        TaskBatches(t.splits["train"], cfg.batch_size * world, recipe.seed + 1 + i, multiple_of=world)
        for i, t in enumerate(tasks)
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
        # Every process scores the same tasks with the same weights (so this also works where
        # the hypernetwork is sharded); the ranks' scores are compared to catch a diverged job.
        unwrapped = accelerator.unwrap_model(model)
        log.info(
            "step %d: scoring %d tasks on validation (up to %d examples each)%s",
            step,
            len(tasks) + len(held_out),
            cfg.max_eval_examples,
            "; a causal LM ranks every label of each example, or writes its free-text answer"
            if hyper_cfg.is_causal_lm
            else "",
        )
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
        log.info("step %d validation: %s (mean %.3f)", step, table, score)
        for t in held_out:
            metrics[t.name] = evaluate_hypernetwork(
                unwrapped, adapted, tokenizer, t, eval_conditions[t.name], **eval_kwargs
            )
            metrics[t.name]["held_out"] = True
            if t.spec.key not in unwrapped.key_index:  # a new task, not a training group in another language
                metrics[t.name]["zero_shot"] = True
        if held_out:
            log.info(
                "step %d held-out tasks (never trained on): %s",
                step,
                ", ".join(
                    f"{t.name} {t.spec.main_metric}={metrics[t.name][t.spec.main_metric]:.3f}"
                    for t in held_out
                ),
            )
        scores = gather_object([score])
        if max(scores) - min(scores) > 1e-4:
            raise HyperAdaptError(
                f"step {step}: the processes disagree on the validation score ({scores}); their "
                "hypernetworks have diverged. Check that every process runs the same hyperadapt, torch "
                "and recipe"
            )
        if cfg.report_to:
            values = {"eval/mean": score}
            for t in [*tasks, *held_out]:
                for key, value in metrics[t.name].items():
                    if key not in ("n", "zero_shot", "held_out"):
                        values[f"eval/{t.name}/{key}"] = value
                values[f"adapter_norm/{t.name}"] = adapter_norm(unwrapped, eval_conditions[t.name])
            accelerator.log(values, step=step)
        return score, metrics

    def trainer_state(step: int) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "step": step,
            "world_size": world,
            "recipe": recipe_dict,
            "sampler": sampler.state_dict(),
            "streams": [s.state_dict() for s in streams],
            "language_modelling": languages.state_dict() if languages is not None else None,
            "conditions": conditions.state_dict(),
            "best": {
                "score": best_score if math.isfinite(best_score) else None,
                "step": best_step,
                "metrics": best_metrics,
            },
            "running": [running, seen],
            "seconds": earlier_seconds + time.perf_counter() - start,
            "data_digest": data_digest,
        }

    best_score, best_metrics, best_step, best_state = -math.inf, {}, 0, None
    running, seen, first_step = 0.0, 0, 1
    lm_running, lm_seen = 0.0, 0
    if checkpoint is not None:
        load_checkpoint(accelerator, checkpoint)
        sampler.load_state_dict(saved["sampler"])
        for stream, state in zip(streams, saved["streams"], strict=True):
            stream.load_state_dict(state)
        if languages is not None:
            languages.load_state_dict(saved["language_modelling"])
        conditions.load_state_dict(saved["conditions"])
        best = saved["best"]
        best_score = -math.inf if best["score"] is None else best["score"]
        best_metrics, best_step = best["metrics"], best["step"]
        best_state = load_best(checkpoint, accelerator.get_state_dict(model))
        running, seen = saved.get("running", [0.0, 0])
        first_step = saved["step"] + 1
        log.info("resuming from %s (step %d of %d)", checkpoint, saved["step"], cfg.max_steps)
        later = [str(p) for n, p in list_checkpoints(out) if n > saved["step"]]
        if later:
            log.warning(
                "checkpoints %s continue another branch of this run; the next checkpoint replaces them", later
            )
    elif resume is not None:
        log.warning("no checkpoint in %s yet; starting from step 0", out / CHECKPOINTS)
    if accelerator.is_main_process and checkpoint is None and overwrite:
        # A run started over must not mix its checkpoints and logs with the old run's.
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        shutil.rmtree(out / LOGS, ignore_errors=True)
    accelerator.wait_for_everyone()
    if cfg.report_to:
        accelerator.init_trackers("hyperadapt", config=_tracker_config(recipe_dict))

    eval_every = cfg.eval_every or cfg.max_steps
    progress = tqdm(
        total=cfg.max_steps,
        initial=first_step - 1,
        desc="training",
        disable=not (show_progress and accelerator.is_main_process),
    )
    # Log lines go above the progress bar instead of into it.
    with logging_redirect_tqdm():
        model.train()
        for step in range(first_step, cfg.max_steps + 1):
            step_loss = torch.zeros((), device=accelerator.device)
            # A language-modelling step trains a language's embedding on masked text of the
            # language, with the adapter generated from the language alone.
            code = languages.language_at(step) if languages is not None else None
            for micro in range(cfg.gradient_accumulation_steps):
                with accelerator.accumulate(model):
                    if code is None:
                        index = sampler()
                        task = tasks[index]
                        batch = streams[index].next()
                        share = len(batch) // world
                        examples = batch[rank * share : (rank + 1) * share]
                        if prompts is not None:
                            inputs, labels = prompts[index].training_batch(examples)
                        else:
                            inputs, labels = encode_batch(tokenizer, task.spec, examples, cfg.max_length)
                    else:
                        inputs, total_masked = languages.batch(
                            code, step * cfg.gradient_accumulation_steps + micro, rank, world
                        )
                        labels = inputs.pop("labels")
                    inputs = {k: v.to(accelerator.device) for k, v in inputs.items()}
                    labels = labels.to(accelerator.device)
                    with accelerator.autocast():
                        if code is None and prompts is not None:
                            adapters, _ = model(conditions(index))
                            loss = adapted.target_loss(adapters, labels, **inputs)
                        elif code is None:
                            adapters, head = model(conditions(index))
                            logits = adapted(adapters, head, per_token=task.spec.is_token_level, **inputs)
                            loss = task_loss(task.spec, logits, labels)
                        else:
                            adapters, _ = model(Condition(language=code), with_head=False)
                            hidden = adapted.hidden_states(adapters, **inputs)
                            loss = masked_lm_loss(
                                lm_head, hidden, labels, adapted.word_embeddings, total_masked, world
                            )
                    if not torch.isfinite(loss):
                        where = f"task {task.name!r}" if code is None else f"masked text in {code!r}"
                        raise HyperAdaptError(
                            f"step {step}: the loss on {where} is {loss.item()}; lower "
                            "training.learning_rate or check the task's labels"
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(trained, cfg.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                step_loss += loss.detach() / cfg.gradient_accumulation_steps
            reduced = float(accelerator.reduce(step_loss, reduction="mean"))
            if code is None:  # the running loss is the tasks' (masked-LM losses are on another scale)
                running += reduced
                seen += 1
            else:
                lm_running += reduced
                lm_seen += 1
            progress.update(1)
            if step % cfg.log_every == 0 and seen:
                lr = scheduler.get_last_lr()[0]
                shown = {"loss": f"{running / seen:.4f}", "lr": f"{lr:.2e}"}
                logged = {"train/loss": running / seen, "train/learning_rate": lr}
                if lm_seen:
                    shown["lm_loss"] = f"{lm_running / lm_seen:.3f}"
                    logged["train/lm_loss"] = lm_running / lm_seen
                progress.set_postfix(**shown)
                log.debug("step %d loss %.4f", step, running / seen)
                if cfg.report_to:
                    accelerator.log(logged, step=step)
                running, seen, lm_running, lm_seen = 0.0, 0, 0.0, 0
            if step % eval_every == 0 or step == cfg.max_steps:
                score, metrics = run_eval(step)
                if score > best_score:
                    best_score, best_metrics, best_step = score, metrics, step
                    best_state = {
                        k: v.detach().cpu().clone() for k, v in accelerator.get_state_dict(model).items()
                    }
            if cfg.save_every and (step % cfg.save_every == 0 or step == cfg.max_steps):
                path = save_checkpoint(
                    accelerator, out, step, trainer_state(step), best_state, cfg.save_total_limit
                )
                log.debug("wrote checkpoint %s", path)
        progress.close()
    if cfg.report_to:
        accelerator.end_training()

    hypernet = accelerator.unwrap_model(model)
    if best_state is not None:
        hypernet.load_state_dict(best_state)
    hypernet_dir = out / "hypernetwork"
    adapter_dirs: dict[str, Path] = {}
    if recipe.export_adapters:
        adapter_dirs = {t.name: out / "adapters" / t.name for t in tasks}
    if accelerator.is_main_process:
        hypernet.to("cpu")
        import yaml

        from .cards import hypernetwork_card

        recipe_text = yaml.safe_dump(recipe_dict, sort_keys=False)
        card = hypernetwork_card(
            hypernet, best_metrics, recipe_text, baselines=baselines, best_step=best_step
        )
        # The new outputs replace the old ones; what else is in the folder stays (this run's
        # checkpoints and logs, or a user's files beside a resumed run), except that --overwrite
        # replaces the folder whole.
        if overwrite:
            carry = (CHECKPOINTS, LOGS)
        else:
            carry = tuple(p.name for p in out.iterdir() if p.name not in OUTPUTS) if out.is_dir() else ()
        with atomic_dir(out, carry=carry) as tmp:
            save_atomically(
                hypernet, tmp / "hypernetwork", {"recipe.yaml": recipe_text, "README.md": card.content}
            )
            for t in tasks if recipe.export_adapters else []:
                export_adapter(
                    hypernet,
                    t.name,
                    tmp / "adapters" / t.name,
                    condition=eval_conditions[t.name],
                    metrics=best_metrics.get(t.name),
                    hypernetwork_ref=str(hypernet_dir),
                )
            summary = {
                "best_step": best_step,
                "validation": best_metrics,
                "majority_baseline": baselines,
                "train_examples": {t.name: len(t.splits["train"]) for t in tasks},
                "world_size": world,
                "seconds": round(earlier_seconds + time.perf_counter() - start, 1),
            }
            if checkpoint is not None:
                summary["resumed_from"] = str(checkpoint)
            (tmp / METRICS_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log.info("wrote the hypernetwork, %d adapters and metrics.json to %s", len(adapter_dirs), out)
    accelerator.wait_for_everyone()
    return TrainResult(
        out,
        hypernet_dir,
        adapter_dirs,
        best_metrics,
        baselines,
        best_step,
        earlier_seconds + time.perf_counter() - start,
        world_size=world,
        process_index=rank,
        resumed_from=checkpoint,
        hypernetwork=hypernet,
        main_metrics={t.name: t.spec.main_metric for t in [*tasks, *held_out]},
    )
