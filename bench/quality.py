"""Quality on a GLUE-like set: the hypernetwork against one peft LoRA per task, a shared LoRA, heads only.

Every contender sees the same examples of each task: the hypernetwork and the two multi-task
baselines are trained for the same steps with the same task sampler, and each per-task peft LoRA
trains for as many steps as the sampler gave its task. Scores are the tasks' test-split main
metrics.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np

from bench.peft_lora import evaluate_peft, train_peft_lora
from hyperadapt.evaluation import evaluate_hypernetwork
from hyperadapt.recipe import parse_recipe
from hyperadapt.runtime import Runtime, load_hypernetwork
from hyperadapt.sampling import TaskSampler
from hyperadapt.training import train

GLUE_LIKE = [
    "glue_sst2",
    "glue_cola",
    "glue_rte",
    "glue_mrpc",
    "glue_stsb",
    "tweeteval_sentiment",
    "trec_coarse",
]
# The multi-task contenders, as changes to the hypernetwork's settings.
MULTITASK = {
    "hyperadapt": {},
    "multitask_lora": {"conditioning": []},
    "heads_only": {"conditioning": [], "adapter": "none"},
}
LABELS = {
    "hyperadapt": "hyperadapt (hypernetwork, all tasks)",
    "peft_lora_per_task": "peft LoRA, one per task",
    "multitask_lora": "one shared LoRA (unconditioned generator)",
    "heads_only": "frozen base, heads only",
}


def recipe_data(
    data_dir: Path,
    tasks: list[str],
    steps: int,
    rank: int,
    max_length: int,
    seed: int,
    generator_width: int = 32,
) -> dict:
    return {
        "seed": seed,
        "output_dir": "unused",
        "export_adapters": False,
        "hypernetwork": {
            "base_model": "minilm",
            "lora_rank": rank,
            "lora_alpha": 2.0 * rank,
            "generator_width": generator_width,
        },
        "training": {
            "max_steps": steps,
            "batch_size": 16,
            "max_length": max_length,
            "learning_rate": 1e-3,
            "eval_every": 0,
            "save_every": 0,
            "temperature": 2.0,
        },
        "tasks": [{"folder": str(data_dir / name)} for name in tasks],
    }


def steps_per_task(recipe, tasks) -> list[int]:
    """How many steps the training run's sampler gives each task (what the per-task LoRAs get)."""
    sampler = TaskSampler([len(t.splits["train"]) for t in tasks], recipe.training.temperature, recipe.seed)
    counts = np.bincount([sampler() for _ in range(recipe.training.max_steps)], minlength=len(tasks))
    return counts.tolist()


def one_seed(data: dict, max_eval: int | None, log=print) -> dict:
    base_recipe = parse_recipe(data)
    tasks = base_recipe.load_tasks()
    max_length = base_recipe.training.max_length
    evals = {"split": "test", "max_examples": max_eval, "max_length": max_length}
    scores: dict = {}
    parameters: dict = {}
    for name, changes in MULTITASK.items():
        recipe = copy.deepcopy(base_recipe)
        for key, value in changes.items():
            setattr(recipe.hypernetwork, key, value)
        log(f"  {name}: {recipe.training.max_steps} steps")
        with tempfile.TemporaryDirectory() as tmp:
            train(recipe, output_dir=Path(tmp) / "run", show_progress=False)
            hypernet = load_hypernetwork(Path(tmp) / "run" / "hypernetwork")
        runtime = Runtime(hypernet)
        scores[name] = {
            t.name: evaluate_hypernetwork(hypernet, runtime.adapted, runtime.tokenizer, t, **evals)[
                t.spec.main_metric
            ]
            for t in tasks
        }
        heads = sum(p.numel() for p in hypernet.head.parameters())
        # What one more task adds: its head, and for the hypernetwork its task-name embedding.
        embedding = hypernet.config.task_embedding_dim if "name" in hypernet.config.conditioning else 0
        parameters[name] = {"total": hypernet.num_parameters(), "per_task": heads // len(tasks) + embedding}
    counts = steps_per_task(base_recipe, tasks)
    scores["peft_lora_per_task"], total = {}, 0
    for task, count in zip(tasks, counts, strict=True):
        log(f"  peft LoRA on {task.name}: {count} steps")
        model, tokenizer = train_peft_lora(
            task,
            steps=max(count, 1),
            rank=base_recipe.hypernetwork.lora_rank,
            alpha=base_recipe.hypernetwork.lora_alpha,
            max_length=max_length,
            seed=base_recipe.seed,
        )
        scores["peft_lora_per_task"][task.name] = evaluate_peft(
            model, tokenizer, task, "test", max_eval, max_length
        )[task.spec.main_metric]
        total += sum(p.numel() for p in model.parameters() if p.requires_grad)
    parameters["peft_lora_per_task"] = {"total": total, "per_task": total // len(tasks)}
    return {
        "scores": scores,
        "parameters": parameters,
        "steps_per_task": dict(zip([t.name for t in tasks], counts, strict=True)),
        "metrics": {t.name: t.spec.main_metric for t in tasks},
        "majority": {t.name: t.majority_baseline("test", max_eval) for t in tasks},
    }


def summarise(runs: list[dict]) -> dict:
    tasks = list(runs[0]["metrics"])
    summary = {}
    for method in runs[0]["scores"]:
        per_task = {}
        for task in tasks:
            values = [r["scores"][method][task] for r in runs]
            per_task[task] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        averages = [float(np.mean([r["scores"][method][t] for t in tasks])) for r in runs]
        summary[method] = {
            "tasks": per_task,
            "average": {"mean": float(np.mean(averages)), "std": float(np.std(averages)), "values": averages},
            "trainable_parameters": runs[0]["parameters"][method]["total"],
            "parameters_per_added_task": runs[0]["parameters"][method]["per_task"],
        }
    return summary
