"""Task x language: pairs never trained on, from a task embedding and a language embedding.

    python -m bench multilingual                 # recipes/multilingual.yaml, 3 seeds
    python -m bench multilingual --quick         # 1 seed, 150 steps: a smoke test, not a result

Trains the recipe twice per seed: conditioned on task and language (as written), and on the task
alone (no language embedding; tasks of a group then share one adapter). Scores on the test
splits: the held-out pairs with (a) task + language, (b) task only, (c) the same task's English
adapter from (a) applied as is; and every seen pair with (a) and (b). Mean and spread over seeds;
JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import environment, write_report
from hyperadapt.conditioning import Condition
from hyperadapt.evaluation import evaluate_hypernetwork
from hyperadapt.recipe import load_recipe
from hyperadapt.runtime import Runtime, load_hypernetwork
from hyperadapt.training import train

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "multilingual.yaml"
LABELS = {
    "task_language": "task + language",
    "task_only": "task only (no language embedding)",
    "english_adapter": "the task's English adapter, as is",
}


def _train(recipe, conditioning: list[str], tmp: Path):
    recipe = copy.deepcopy(recipe)
    recipe.hypernetwork.conditioning = conditioning
    recipe.export_adapters = False
    train(recipe, output_dir=tmp / "run", show_progress=False)
    return load_hypernetwork(tmp / "run" / "hypernetwork")


def _score(hypernet, runtime, task, condition, max_eval: int, max_length: int) -> float:
    metrics = evaluate_hypernetwork(
        hypernet, runtime.adapted, runtime.tokenizer, task, condition,
        split="test", max_examples=max_eval, max_length=max_length,
    )  # fmt: skip
    return metrics[task.spec.main_metric]


def one_seed(recipe, max_eval: int, log=print) -> dict:
    tasks, held = recipe.load_tasks(), recipe.load_held_out()
    length = recipe.training.max_length
    scores: dict[str, dict[str, float]] = {name: {} for name in LABELS}
    held_names = {t.name for t in held}
    with_language = list(recipe.hypernetwork.conditioning)
    without = [p for p in with_language if p != "language"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, parts in (("task_language", with_language), ("task_only", without)):
            log(f"  {name}: {recipe.training.max_steps} steps")
            hypernet = _train(recipe, parts, Path(tmp) / name)
            runtime = Runtime(hypernet)
            for task in [*tasks, *held]:
                language = task.spec.language if "language" in parts else None
                condition = Condition(task=task.spec.key, language=language)
                scores[name][task.name] = _score(hypernet, runtime, task, condition, max_eval, length)
                if name == "task_language" and task.name in held_names:
                    english = Condition(task=task.spec.key, language="en")
                    scores["english_adapter"][task.name] = _score(
                        hypernet, runtime, task, english, max_eval, length
                    )
    return {
        "scores": scores,
        "held_out": [t.name for t in held],
        "seen": [t.name for t in tasks],
        "metrics": {t.name: t.spec.main_metric for t in [*tasks, *held]},
        "pairs": {t.name: [t.spec.key, t.spec.language] for t in [*tasks, *held]},
    }


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for method in LABELS:
        names = [n for n in runs[0]["scores"][method]]
        per_task = {}
        for name in names:
            values = [r["scores"][method][name] for r in runs]
            per_task[name] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}
        groups = {}
        for group in ("held_out", "seen"):
            chosen = [n for n in runs[0][group] if n in names]
            if chosen:
                averages = [statistics.fmean(r["scores"][method][n] for n in chosen) for r in runs]
                groups[group] = {"mean": statistics.fmean(averages), "std": statistics.pstdev(averages)}
        summary[method] = {"tasks": per_task, **groups}
    return summary


def markdown(results: dict) -> str:
    s, summary, first = results["settings"], results["summary"], results["runs"][0]
    lines = [
        f"## Task x language ({len(s['seeds'])} seed(s), {s['steps']} steps, test split, first {s['max_eval']} examples)",
        "",
        "| method | "
        + " | ".join(f"{n} ({first['metrics'][n]}, held out)" for n in first["held_out"])
        + " | held-out average | seen average |",
        "| --- | " + " | ".join("---" for _ in first["held_out"]) + " | --- | --- |",
    ]
    for method, entry in summary.items():

        def cell(stat):
            return f"{stat['mean']:.3f} ± {stat['std']:.3f}" if stat else "-"

        cells = [cell(entry["tasks"].get(n)) for n in first["held_out"]]
        lines.append(
            f"| {LABELS[method]} | "
            + " | ".join(cells)
            + f" | {cell(entry.get('held_out'))} | {cell(entry.get('seen'))} |"
        )
    lines += ["", "| seen pair | task + language | task only |", "| --- | --- | --- |"]
    for name in first["seen"]:
        a, b = summary["task_language"]["tasks"][name], summary["task_only"]["tasks"][name]
        lines.append(
            f"| {name} ({first['metrics'][name]}) | {a['mean']:.3f} ± {a['std']:.3f} | {b['mean']:.3f} ± {b['std']:.3f} |"
        )
    env = results["environment"]
    lines += [
        "",
        f"Recipe {s['recipe']}; {results['seconds'] / 60:.1f} min; {env['date']}; {env['cpus']} CPUs; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--max-eval", type=int, default=300, help="test examples per task")
    parser.add_argument("--out", default="bench/results/multilingual")
    parser.add_argument("--quick", action="store_true", help="1 seed, 150 steps, 100 test examples")


def main(args) -> None:
    if args.quick:
        args.seeds, args.steps, args.max_eval = [0], 150, 100
    base = load_recipe(args.recipe)
    if args.steps:
        base.training = dataclasses.replace(base.training, max_steps=args.steps, eval_every=0, save_every=0)
    args.steps = base.training.max_steps
    started = time.perf_counter()
    runs = []
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        recipe = copy.deepcopy(base)
        recipe.seed = seed
        runs.append(one_seed(recipe, args.max_eval))
    results = {
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "runs": runs,
        "summary": summarise(runs),
        "seconds": time.perf_counter() - started,
        "environment": environment(),
    }
    write_report(Path(args.out), results, markdown(results))
