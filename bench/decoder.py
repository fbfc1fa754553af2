"""Zero-shot on held-out tasks for a causal LM (recipes/decoder_zero_shot.yaml).

    python -m bench decoder
    python -m bench decoder --quick

Targets: on the held-out tasks, adapters generated from the task description beat the base
model without an adapter and one shared multi-task LoRA trained on the same tasks without
conditioning, on average over seeds; and the right description beats a random string.

For each seed it trains the recipe's hypernetwork (conditioned on descriptions) and the
unconditioned multi-task LoRA (``conditioning: []``) on the recipe's tasks, and scores the
held-out tasks' test splits by ranking each label's likelihood after the same prompt. The base
model without adapter is scored once (it has no seed). Writes JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import check_out_folder, environment, write_report
from bench.zero_shot import _random_description
from hyperadapt.base_model import load_causal_lm, load_tokenizer
from hyperadapt.causal_lm import evaluate_choices, peft_log_likelihood
from hyperadapt.errors import HyperAdaptError
from hyperadapt.evaluation import evaluate_hypernetwork
from hyperadapt.recipe import load_recipe
from hyperadapt.runtime import Runtime, load_hypernetwork
from hyperadapt.training import train

TRAINED = {"hyperadapt": {}, "multitask_lora": {"conditioning": []}}


QUICK = {"seeds": [0], "steps": 30, "max_eval": 20, "max_eval_train": 5}
FULL = {"seeds": [0, 1, 2], "steps": 150, "max_eval": 100, "max_eval_train": 20}


def settle(args):
    """Fill in the settings not given (--quick's or the full run's), check them, and load the recipe
    and its tasks, all before anything trains.

    Raises:
        HyperAdaptError: naming the option (or the recipe) and the fix.
    """
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("steps", "max_eval", "max_eval_train"):
        if getattr(args, name) < 1:
            raise HyperAdaptError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(args, name)}")
    if len(set(args.seeds)) != len(args.seeds) or any(not 0 <= s < 2**32 for s in args.seeds):
        raise HyperAdaptError(f"--seeds takes distinct numbers in 0..{2**32 - 1}, got {args.seeds}")
    recipe = load_recipe(args.recipe)
    if not recipe.hypernetwork.is_causal_lm:
        raise HyperAdaptError(
            f"{args.recipe} is not for a causal LM; set hypernetwork.model_class: causal_lm (see "
            "recipes/decoder_zero_shot.yaml)"
        )
    if "description" not in recipe.hypernetwork.conditioning:
        raise HyperAdaptError(
            f"{args.recipe}: hypernetwork.conditioning {recipe.hypernetwork.conditioning} has no 'description'; "
            "this benchmark generates adapters for new tasks from their descriptions"
        )
    if not recipe.held_out:
        raise HyperAdaptError(
            f"{args.recipe} holds out no task (held_out:); add the tasks to score zero-shot"
        )
    for task in [*recipe.load_tasks(), *recipe.load_held_out()]:  # a missing folder or a bad task, now
        problem = recipe.hypernetwork.causal_task_problem(task.spec.task_type)
        if problem:
            raise HyperAdaptError(f"{args.recipe}: task {task.name!r}: {problem}")
    check_out_folder(args.out)
    return recipe


def run(args) -> dict:
    recipe = settle(args)
    out_dir = Path(args.out)
    held = recipe.load_held_out()
    max_length = recipe.training.max_length
    evals = {"split": "test", "max_examples": args.max_eval, "max_length": max_length, "batch_size": 32}
    results: dict = {
        "settings": {
            **{k: v for k, v in vars(args).items() if k != "func"},
            "train_tasks": [e.label for e in recipe.tasks],
            "held_out": [t.name for t in held],
            "base_model": recipe.hypernetwork.base_model,
            "batch_size": recipe.training.batch_size,
            "max_length": max_length,
            "learning_rate": recipe.training.learning_rate,
        },
        "runs": [],
    }
    started = time.perf_counter()
    base = load_causal_lm(recipe.hypernetwork.base_model)
    tokenizer = load_tokenizer(recipe.hypernetwork.base_model)
    scorer = peft_log_likelihood(base)
    results["no_adapter"] = {
        t.name: evaluate_choices(scorer, tokenizer, t, **evals)["accuracy"] for t in held
    }
    results["no_adapter"]["_seconds"] = round(time.perf_counter() - started, 1)
    del base, scorer
    print(json.dumps({"no_adapter": results["no_adapter"]}), flush=True)
    for seed in args.seeds:
        row: dict = {"seed": seed, "scores": {}}
        for variant, overrides in TRAINED.items():
            trial = copy.deepcopy(recipe)
            trial.seed, trial.export_adapters, trial.held_out = seed, False, []
            trial.training.max_steps, trial.training.eval_every = args.steps, 0
            trial.training.save_every = 0
            trial.training.max_eval_examples = args.max_eval_train
            for key, value in overrides.items():
                setattr(trial.hypernetwork, key, value)
            with tempfile.TemporaryDirectory() as tmp:
                begun = time.perf_counter()
                result = train(trial, output_dir=Path(tmp) / "run", show_progress=False)
                seconds = time.perf_counter() - begun
                hypernet = load_hypernetwork(result.hypernetwork_dir)
            runtime = Runtime(hypernet)
            scores = row["scores"].setdefault(variant, {"_train_seconds": round(seconds, 1)})
            scores["_train_mean"] = round(
                float(np.mean([m[result.main_metrics[n]] for n, m in result.metrics.items()])), 4
            )
            for task in held:
                condition = runtime.condition(task.spec)
                entry = {"zero_shot": _score(hypernet, runtime, task, condition, evals)}
                if variant == "hyperadapt":
                    noise = runtime.condition(task.spec, description=_random_description(seed))
                    entry["random_description"] = _score(hypernet, runtime, task, noise, evals)
                scores[task.name] = entry
            if variant == "hyperadapt":
                row["latency_ms"] = _latency(hypernet, runtime, held[0].spec)
            del runtime, hypernet
        results["runs"].append(row)
        print(json.dumps(row), flush=True)
        results["summary"] = _summarise(results, held)
        results["environment"] = environment()
        # After every seed, so that a run cut short keeps the seeds it finished.
        write_report(out_dir, results, markdown(results), quiet=True)
    results["majority_baseline"] = {t.name: t.majority_baseline("test", args.max_eval) for t in held}
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["summary"] = _summarise(results, held)
    return results


def _score(hypernet, runtime, task, condition, evals) -> float:
    return evaluate_hypernetwork(hypernet, runtime.adapted, runtime.tokenizer, task, condition, **evals)[
        "accuracy"
    ]


@torch.no_grad()
def _latency(hypernet, runtime, spec, repeats: int = 20) -> dict:
    """Median time to generate an adapter from a new description (encoding included)."""
    times = []
    for i in range(repeats):
        begun = time.perf_counter()
        hypernet(runtime.condition(spec, description=f"{spec.description} (wording {i})"))
        times.append((time.perf_counter() - begun) * 1000)
    return {"from_description_median": round(statistics.median(times), 2)}


def _summarise(results: dict, held) -> dict:
    names = [t.name for t in held]
    summary: dict = {
        "no_adapter": {
            "zero_shot": {
                **{n: {"mean": results["no_adapter"][n], "std": 0.0} for n in names},
                "_average": {"mean": float(np.mean([results["no_adapter"][n] for n in names])), "std": 0.0},
            }
        }
    }
    runs = results["runs"]
    for variant in TRAINED:
        for setting in runs[0]["scores"][variant][names[0]]:
            per_task = {}
            for n in names:
                values = [r["scores"][variant][n][setting] for r in runs]
                per_task[n] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
            per_seed = [float(np.mean([r["scores"][variant][n][setting] for n in names])) for r in runs]
            per_task["_average"] = {
                "mean": float(np.mean(per_seed)),
                "std": float(np.std(per_seed)),
                "values": per_seed,
            }
            summary.setdefault(variant, {})[setting] = per_task
    generated = summary["hyperadapt"]["zero_shot"]["_average"]["mean"]
    summary["targets"] = {
        "beats_no_adapter": generated > summary["no_adapter"]["zero_shot"]["_average"]["mean"],
        "beats_multitask_lora": generated > summary["multitask_lora"]["zero_shot"]["_average"]["mean"],
        "right_beats_random_description": generated
        > summary["hyperadapt"]["random_description"]["_average"]["mean"],
    }
    return summary


def markdown(results: dict) -> str:
    summary = results["summary"]
    names = results["settings"]["held_out"]
    lines = [
        "| variant | condition | " + " | ".join(names) + " | average |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for variant in ("hyperadapt", "multitask_lora", "no_adapter"):
        for setting, per_task in summary[variant].items():
            cells = [f"{per_task[n]['mean']:.3f} ± {per_task[n]['std']:.3f}" for n in [*names, "_average"]]
            lines.append(f"| {variant} | {setting} | " + " | ".join(cells) + " |")
    majority = results.get("majority_baseline")
    if majority:
        lines.append("| majority class | - | " + " | ".join(f"{majority[n]:.3f}" for n in names) + " | - |")
    settings = results["settings"]
    seeds = [r["seed"] for r in results["runs"]]
    latency = [r["latency_ms"]["from_description_median"] for r in results["runs"]]
    targets = summary["targets"]
    lines += [
        "",
        f"Test accuracy (labels ranked by likelihood), first {settings['max_eval']} test examples per task; "
        f"mean ± std over seeds {seeds} (the base model without adapter has no seed). Base "
        f"{settings['base_model']}; {settings['steps']} training steps of batch {settings['batch_size']}, "
        f"max_length {settings['max_length']}, learning rate {settings['learning_rate']}; trained on "
        f"{len(settings['train_tasks'])} tasks, the held-out ones never seen.",
        f"Generating an adapter from a new description (encoding included): median "
        f"{statistics.median(latency):.1f} ms.",
        "",
        "Targets: generated adapter beats the base model without adapter: "
        f"{'met' if targets['beats_no_adapter'] else 'NOT met'}; beats the multi-task LoRA: "
        f"{'met' if targets['beats_multitask_lora'] else 'NOT met'}; the right description beats a random "
        f"string: {'met' if targets['right_beats_random_description'] else 'NOT met'}.",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default="recipes/decoder_zero_shot.yaml", help="(default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"(default: {FULL['seeds']})")
    parser.add_argument("--steps", type=int, help=f"training steps per model (default: {FULL['steps']})")
    parser.add_argument(
        "--max-eval", type=int, help=f"test examples per held-out task (default: {FULL['max_eval']})"
    )
    parser.add_argument(
        "--max-eval-train",
        type=int,
        help=f"validation examples per training task, scored once at the end (default: {FULL['max_eval_train']})",
    )
    parser.add_argument("--out", default="bench/results/decoder", help="(default: %(default)s)")
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 30 steps, 20 examples (where not given): a smoke test"
    )


def main(args) -> None:
    results = run(args)
    write_report(Path(args.out), results, markdown(results))
