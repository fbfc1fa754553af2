"""Leave-tasks-out evaluation: adapters generated from descriptions for tasks never trained on.

    python -m bench zero-shot --held-out glue_sst2,glue_rte,tweeteval_stance_atheism
    python -m bench zero-shot --quick

Trains on the recipe's tasks minus the held-out group, then scores the held-out tasks' test
splits: zero-shot (description and labels), few-shot (k examples with the description), and
with a wrong or random description; against the frozen base with a label-semantic head (no
adapter), one shared multi-task LoRA without conditioning, and a peft LoRA trained on the
held-out task itself (upper bound). Writes JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import string
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import environment, write_report
from bench.peft_lora import evaluate_peft, train_peft_lora
from hyperadapt.evaluation import evaluate_hypernetwork
from hyperadapt.recipe import load_recipe
from hyperadapt.runtime import Runtime, load_hypernetwork
from hyperadapt.training import train

QUICK = {"seeds": [0], "steps": 120, "peft_steps": 60, "max_eval": 100, "max_eval_train": 50}
FULL = {"seeds": [0, 1, 2], "steps": 600, "peft_steps": 300, "max_eval": 400, "max_eval_train": 200}

VARIANTS = {
    "hyperadapt": {},
    "multitask_lora": {"conditioning": [], "description_attention": False},
    "no_adapter": {"conditioning": [], "adapter": "none", "description_attention": False},
}


def _split_recipe(recipe, held_names: list[str]):
    entries = recipe.tasks + recipe.held_out
    known = [e.label for e in entries]
    missing = [n for n in held_names if not any(k == n or k.endswith("/" + n) for k in known)]
    if missing:
        raise SystemExit(f"--held-out {missing} are not tasks of the recipe; its tasks: {known}")

    def is_held(entry):
        return any(entry.label == n or entry.label.endswith("/" + n) for n in held_names)

    return [e for e in entries if not is_held(e)], [e for e in entries if is_held(e)]


def _random_description(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) for _ in range(14)
    )


def run(args) -> dict:
    base_recipe = load_recipe(args.recipe)
    train_entries, held_entries = _split_recipe(base_recipe, args.held_out)
    base_recipe.tasks, base_recipe.held_out = train_entries, held_entries
    held_tasks = base_recipe.load_held_out()
    results: dict = {"settings": {**vars(args), "train_tasks": [e.label for e in train_entries]}, "runs": []}
    evals = {"split": "test", "max_examples": args.max_eval, "max_length": base_recipe.training.max_length}
    for seed in args.seeds:
        run_result: dict = {"seed": seed, "scores": {}, "latency_ms": {}}
        for variant, overrides in VARIANTS.items():
            recipe = copy.deepcopy(base_recipe)
            recipe.seed, recipe.export_adapters, recipe.held_out = seed, False, []
            recipe.training.max_steps, recipe.training.eval_every = args.steps, 0
            recipe.training.max_eval_examples = args.max_eval_train
            for key, value in overrides.items():
                setattr(recipe.hypernetwork, key, value)
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                out = train(recipe, output_dir=Path(tmp) / "run", show_progress=False)
                train_seconds = time.perf_counter() - started
                hypernet = load_hypernetwork(out.hypernetwork_dir)
            runtime = Runtime(hypernet)
            scores = run_result["scores"].setdefault(variant, {})
            scores["_train_seconds"] = round(train_seconds, 1)
            for i, task in enumerate(held_tasks):
                spec = task.spec
                score = _scorer(hypernet, runtime, task, evals)
                row = {"zero_shot": score(runtime.condition(spec))}
                if variant == "hyperadapt":
                    other = held_tasks[(i + 1) % len(held_tasks)].spec.description
                    if len(held_tasks) == 1:
                        other = recipe.load_tasks()[0].spec.description
                    row["wrong_description"] = score(runtime.condition(spec, description=other))
                    row["random_description"] = score(
                        runtime.condition(spec, description=_random_description(seed))
                    )
                    for k in args.shots:
                        order = np.random.default_rng(seed).permutation(len(task.splits["train"]))[:k]
                        shots = [task.splits["train"][j] for j in order]
                        row[f"few_shot_{k}"] = score(runtime.condition(spec, examples=shots))
                scores[task.name] = row
            if variant == "hyperadapt":
                run_result["latency_ms"] = _latency(hypernet, runtime, held_tasks[0].spec)
        upper = run_result["scores"].setdefault("peft_lora_on_task", {})
        for task in held_tasks:
            model, tokenizer = train_peft_lora(
                task,
                base_recipe.hypernetwork.base_model,
                steps=args.peft_steps,
                seed=seed,
                max_length=base_recipe.training.max_length,
            )
            upper[task.name] = {
                "trained_on_task": evaluate_peft(
                    model, tokenizer, task, "test", args.max_eval, base_recipe.training.max_length
                )[task.spec.main_metric]
            }
        results["runs"].append(run_result)
        print(json.dumps(run_result, indent=1))
    results["summary"] = _summarise(results["runs"], held_tasks)
    results["targets"] = targets(results["summary"])
    results["majority_baseline"] = {t.name: t.majority_baseline("test", args.max_eval) for t in held_tasks}
    results["environment"] = environment()
    return results


def _scorer(hypernet, runtime, task, evals):
    def score(condition) -> float:
        metrics = evaluate_hypernetwork(
            hypernet, runtime.adapted, runtime.tokenizer, task, condition, **evals
        )
        return metrics[task.spec.main_metric]

    return score


@torch.no_grad()
def _latency(hypernet, runtime, spec, repeats: int = 20) -> dict:
    """Median time to generate an adapter from a new description (encoding included)."""
    times = []
    for i in range(repeats):
        text = f"{spec.description} (wording {i})"  # a new text each time: no cache hit
        started = time.perf_counter()
        hypernet(runtime.condition(spec, description=text))
        times.append((time.perf_counter() - started) * 1000)
    return {"from_description_median": round(statistics.median(times), 2)}


def _summarise(runs: list[dict], held_tasks) -> dict:
    summary: dict = {}
    for variant in runs[0]["scores"]:
        for task in held_tasks:
            for setting in runs[0]["scores"][variant][task.name]:
                values = [r["scores"][variant][task.name][setting] for r in runs]
                summary.setdefault(variant, {}).setdefault(setting, {})[task.name] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "values": values,
                }
        for setting, per_task in summary[variant].items():
            means = [v["mean"] for v in per_task.values()]
            per_seed = [np.mean([r["scores"][variant][t.name][setting] for t in held_tasks]) for r in runs]
            per_task["_average"] = {"mean": float(np.mean(means)), "std": float(np.std(per_seed))}
    return summary


def targets(summary: dict) -> dict[str, bool]:
    """The issue's targets, on the held-out average over seeds: the description-generated adapter
    beats the frozen base without adapter and the shared multi-task LoRA, and the right description
    beats another task's and a random string."""
    average = {
        (variant, setting): per_task["_average"]["mean"]
        for variant, settings in summary.items()
        for setting, per_task in settings.items()
    }
    generated = average[("hyperadapt", "zero_shot")]
    return {
        "beats_no_adapter": generated > average[("no_adapter", "zero_shot")],
        "beats_multitask_lora": generated > average[("multitask_lora", "zero_shot")],
        "right_beats_wrong_description": generated > average[("hyperadapt", "wrong_description")],
        "right_beats_random_description": generated > average[("hyperadapt", "random_description")],
    }


def markdown(results: dict) -> str:
    summary = results["summary"]
    tasks = [k for k in summary["hyperadapt"]["zero_shot"] if k != "_average"]
    lines = [
        "| variant | condition | " + " | ".join(tasks) + " | average |",
        "| --- | --- | " + " | ".join("---" for _ in tasks) + " | --- |",
    ]
    for variant, settings in summary.items():
        for setting, per_task in settings.items():
            cells = [f"{per_task[t]['mean']:.3f} ± {per_task[t]['std']:.3f}" for t in tasks]
            avg = per_task["_average"]
            lines.append(
                f"| {variant} | {setting} | "
                + " | ".join(cells)
                + f" | {avg['mean']:.3f} ± {avg['std']:.3f} |"
            )
    majority = results.get("majority_baseline", {})
    if majority:
        cells = [f"{majority[t]:.3f}" if majority.get(t) is not None else "-" for t in tasks]
        lines.append("| majority class | - | " + " | ".join(cells) + " | - |")
    seeds = results["settings"]["seeds"]
    latency = [r["latency_ms"].get("from_description_median") for r in results["runs"]]
    lines += [
        "",
        f"Test-split main metric (accuracy), mean ± std over seeds {seeds}; "
        f"{results['settings']['steps']} training steps; held-out tasks never trained on.",
        f"Trained on {', '.join(Path(t).name for t in results['settings']['train_tasks'])}.",
        f"Generating an adapter from a new description (encoding included): median {statistics.median(latency):.1f} ms.",
        "",
        "Targets (held-out average over seeds): "
        + "; ".join(
            f"{name.replace('_', ' ')}: {'met' if met else 'NOT met'}"
            for name, met in targets(summary).items()
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe", default="recipes/zero_shot.yaml", help="recipe with the tasks (default: %(default)s)"
    )
    parser.add_argument(
        "--held-out",
        default="glue_sst2,glue_rte,tweeteval_stance_atheism",
        type=lambda s: [t.strip() for t in s.split(",") if t.strip()],
        help="the tasks to hold out, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help=f"(default: {FULL['seeds']})")
    parser.add_argument("--steps", type=int, help=f"training steps per model (default: {FULL['steps']})")
    parser.add_argument(
        "--peft-steps", type=int, help=f"steps of the per-task peft LoRA (default: {FULL['peft_steps']})"
    )
    parser.add_argument(
        "--shots",
        type=int,
        nargs="+",
        default=[4, 16],
        help="k of few-shot conditions (default: %(default)s)",
    )
    parser.add_argument(
        "--max-eval", type=int, help=f"test examples per held-out task (default: {FULL['max_eval']})"
    )
    parser.add_argument(
        "--max-eval-train",
        type=int,
        help=f"validation examples per training task (default: {FULL['max_eval_train']})",
    )
    parser.add_argument("--out", default="bench/results/zero_shot", help="(default: %(default)s)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 120 steps, small evaluations (where not given): a smoke test, not a result",
    )


def settle(args) -> None:
    """Fill in the settings not given: --quick's, or the full run's."""
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def main(args) -> None:
    settle(args)
    results = run(args)
    write_report(Path(args.out), results, markdown(results))
