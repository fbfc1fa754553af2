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

from bench.common import check_out_folder, environment, write_report
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
    if "language" not in conditioning:  # no language embeddings to train on masked text
        recipe.training = dataclasses.replace(recipe.training, language_modelling=0.0)
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
    in_english = {t.spec.key for t in tasks if t.spec.language == "en"}  # groups with an English adapter
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
                if name == "task_language" and task.name in held_names and task.spec.key in in_english:
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


def _averages(runs: list[dict], method: str, group: str) -> list[float]:
    """Per seed, the method's average over the group's pairs (those it scored)."""
    names = [n for n in runs[0][group] if n in runs[0]["scores"][method]]
    return [statistics.fmean(r["scores"][method][n] for n in names) for r in runs] if names else []


def targets(results: dict) -> list[str]:
    """The targets, each with its figure: held-out pairs gain from the language, seen pairs lose nothing.

    "Lose nothing" allows the spread over seeds of the per-seed difference (at least 0.005): the
    two trainings differ by their seeds' noise even where the language changes nothing.
    """
    runs = results["runs"]
    held = {m: statistics.fmean(v) for m in LABELS if (v := _averages(runs, m, "held_out"))}
    ours = _averages(runs, "task_language", "seen")
    gaps = [a - b for a, b in zip(ours, _averages(runs, "task_only", "seen"))]
    allowed = max(statistics.pstdev(gaps), 0.005)

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    others = [m for m in ("task_only", "english_adapter") if m in held]
    versus = " and ".join(f"{held[m]:.3f} ({LABELS[m].split(' (')[0]})" for m in others)
    beaten = all(held["task_language"] > held[m] for m in others)
    return [
        f"- Held-out pairs, task + language above task only and the English adapter: {held['task_language']:.3f} "
        f"vs {versus}, {mark(beaten)}"
        + ("" if "english_adapter" in held else " (no English adapter: the groups have no English task)")
        + ".",
        f"- Seen pairs lose nothing against task only: {statistics.fmean(gaps):+.3f} on average "
        f"(allowed -{allowed:.3f}, the spread over seeds), {mark(statistics.fmean(gaps) >= -allowed)}.",
    ]


def markdown(results: dict) -> str:
    s, summary, first = results["settings"], results["summary"], results["runs"][0]
    lines = [
        "## Targets",
        "",
        *targets(results),
        "",
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
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument(
        "--max-eval",
        type=int,
        default=None,
        help="test examples per task (default: 1000, all of the shipped test splits)",
    )
    parser.add_argument("--out", default="bench/results/multilingual")
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 150 steps, 100 test examples (where not given)"
    )


QUICK = {"seeds": [0], "steps": 150, "max_eval": 100}


def settle(args):
    """Fill in --quick's settings where not given, check every setting and load the recipe and its
    tasks, all before anything trains.

    Raises:
        HyperAdaptError: naming the option (or the recipe) and the fix.
    """
    from hyperadapt.errors import HyperAdaptError

    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    args.seeds = args.seeds if args.seeds is not None else [0, 1, 2]
    args.max_eval = args.max_eval if args.max_eval is not None else 1000
    for name in ("steps", "max_eval"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise HyperAdaptError(f"--{name.replace('_', '-')} must be 1 or more, got {value}")
    bad = [seed for seed in args.seeds if not 0 <= seed < 2**32]
    if bad or len(set(args.seeds)) != len(args.seeds):
        raise HyperAdaptError(f"--seeds takes distinct numbers in 0..{2**32 - 1}, got {args.seeds}")
    base = load_recipe(args.recipe)
    if "language" not in base.hypernetwork.conditioning:
        raise HyperAdaptError(
            f"{args.recipe}: hypernetwork.conditioning {base.hypernetwork.conditioning} has no 'language'; "
            "this benchmark compares conditioning on task and language with task alone"
        )
    if not base.held_out:
        raise HyperAdaptError(
            f"{args.recipe} has no held_out pairs to score; add one (see recipes/multilingual.yaml)"
        )
    from hyperadapt.data import language_problem

    tasks, held = base.load_tasks(), base.load_held_out()  # a missing folder or a bad group, now
    problem = language_problem([t.spec for t in tasks], [t.spec for t in held])
    if problem:
        raise HyperAdaptError(f"{args.recipe} held_out: {problem}")
    check_out_folder(args.out)
    # The benchmark scores the test splits itself: no evaluation or checkpoints during training.
    steps = args.steps or base.training.max_steps
    base.training = dataclasses.replace(base.training, max_steps=steps, eval_every=0, save_every=0)
    args.steps = steps
    return base


def main(args) -> None:
    base = settle(args)
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
