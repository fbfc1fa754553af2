"""The benchmark report: quality, speed, memory and scaling of hyperadapt against peft LoRA.

    python -m bench run            # 3 seeds, 600 steps, 7 tasks (under an hour on 2 cores)
    python -m bench run --quick    # 1 seed, 4 tasks, 100 steps, short timings (under 5 minutes)

Quality: on a GLUE-like set from ../shared/data (sst2, cola, rte, mrpc, stsb, tweeteval
sentiment, trec; boolq's passages do not fit the 64 tokens the budget allows), the test-split
main metric of (a) the hypernetwork trained on all tasks (generator width 32),
(b) one peft LoRA per task, (c) one shared multi-task LoRA, (d) the frozen base with trained heads
only; same base (MiniLM-L6), same rank, same examples of each task; mean and spread over seeds.
Speed: training step time of the hypernetwork / peft LoRA at the same rank, batch and length, and
the generator's share of it; adapter generation latency; inference with an exported adapter, a peft
LoRA, merged weights and the base model; all timed side by side in this process, interleaved.
Memory: peak resident memory of a short training run, each in a fresh process. Scaling: size and
step time against the number of tasks, the rank and the depth.

Writes OUT/results.json (every figure with its settings, the machine and library versions),
OUT/report.md and OUT/*.png, and prints the report.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench import quality, scaling, speed
from bench.common import check_out_folder, environment, write_report

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(args) -> dict:
    from hyperadapt.data import load_task_folder

    results: dict = {"settings": {k: v for k, v in vars(args).items() if k != "func"}}
    seconds = results["seconds"] = {}
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        print(f"quality, seed {seed}", flush=True)
        data = quality.recipe_data(
            Path(args.data), args.tasks, args.steps, args.rank, args.max_length, seed, args.generator_width
        )
        runs.append(quality.one_seed(data, args.max_eval))
    results["quality"] = {"runs": runs, "summary": quality.summarise(runs)}
    seconds["quality"] = time.perf_counter() - start

    print("speed and memory", flush=True)
    trec = load_task_folder(Path(args.data) / "trec_coarse")
    results["training_step"] = speed.training_step(
        "minilm", trec, args.rank, 16, args.max_length, args.repeats
    )
    results["generation_ms"] = speed.generation_latency("minilm", args.repeats)
    results["inference"] = speed.inference("minilm", trec, 32, args.max_length, args.repeats)
    results["memory"] = speed.peak_memory("minilm", args.memory_steps)
    seconds["speed_and_memory"] = time.perf_counter() - start - seconds["quality"]

    print("scaling", flush=True)
    results["scaling"] = {
        "tasks": scaling.by_tasks(
            "minilm", args.task_counts, args.repeats, *scaling.random_batch(), args.generator_width
        ),
        "rank": scaling.by_rank(args.ranks, args.repeats),
        "layers": scaling.by_layers(args.depths, args.repeats),
    }
    seconds["scaling"] = time.perf_counter() - start - seconds["quality"] - seconds["speed_and_memory"]
    results["environment"] = environment()
    return results


def _save(fig, out: Path, name: str) -> None:
    """Write a plot through a temporary file, so a stopped run leaves no half-written image."""
    tmp = out / f".{name}.tmp"
    fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
    os.replace(tmp, out / name)


def plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = results["scaling"]["tasks"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(
        [r["tasks"] for r in rows], [r["hyperadapt_parameters"] / 1e6 for r in rows], "o-", label="hyperadapt"
    )
    ax.plot(
        [r["tasks"] for r in rows],
        [r["peft_lora_parameters"] / 1e6 for r in rows],
        "s--",
        label="one peft LoRA per task",
    )
    ax.set_xlabel("tasks")
    ax.set_ylabel("trainable parameters (millions)")
    ax.set_title("Trainable parameters as tasks are added (MiniLM-L6, rank 8)")
    ax.legend()
    fig.tight_layout()
    _save(fig, out, "scaling_tasks.png")
    written.append("scaling_tasks.png")

    summary = results["quality"]["summary"]
    tasks = list(next(iter(summary.values()))["tasks"])
    fig, ax = plt.subplots(figsize=(8, 4.9))
    width = 0.8 / len(summary)
    for i, (method, entry) in enumerate(summary.items()):
        xs = [j + i * width for j in range(len(tasks))]
        ax.bar(
            xs,
            [entry["tasks"][t]["mean"] for t in tasks],
            width,
            yerr=[entry["tasks"][t]["std"] for t in tasks],
            label=quality.LABELS[method],
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=30, ha="right")
    ax.set_ylabel("test main metric")
    ax.set_title("Test main metric per task, mean and std over seeds (MiniLM-L6, LoRA rank 8)", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    fig.tight_layout()
    _save(fig, out, "quality.png")
    written.append("quality.png")
    plt.close("all")
    return written


def targets(results: dict) -> list[str]:
    """The issue's targets, each with its measured figure and whether it is met."""
    summary = results["quality"]["summary"]
    hyper, per_task = summary["hyperadapt"], summary["peft_lora_per_task"]
    step, inf = results["training_step"], results["inference"]
    noise = inf.get("noise", 0.02)

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    quality_ok = (
        hyper["average"]["mean"] >= per_task["average"]["mean"]
        and hyper["trainable_parameters"] < per_task["trainable_parameters"]
    )
    return [
        f"- Training step within 1.10x of peft LoRA: {step['ratio']:.3f}, {mark(step['ratio'] <= 1.10)}.",
        f"- Exported adapter under peft / peft LoRA inference 1.00 within noise (+-{noise:.2f}): "
        f"{inf['exported_over_peft_lora']:.3f}, {mark(abs(inf['exported_over_peft_lora'] - 1) <= noise)}; "
        f"merged / base {inf['merged_over_base']:.3f}, {mark(abs(inf['merged_over_base'] - 1) <= noise)}.",
        f"- GLUE-like average at least one peft LoRA per task's, with fewer trainable parameters in total: "
        f"{hyper['average']['mean']:.3f} vs {per_task['average']['mean']:.3f}, "
        f"{hyper['trainable_parameters']:,} vs {per_task['trainable_parameters']:,} parameters, {mark(quality_ok)}.",
    ]


def markdown(results: dict) -> str:
    s = results["settings"]
    summary = results["quality"]["summary"]
    tasks = list(next(iter(summary.values()))["tasks"])
    metrics = results["quality"]["runs"][0]["metrics"]
    steps = results["quality"]["runs"][0]["steps_per_task"]
    lines = [
        "## Targets",
        "",
        *targets(results),
        "",
        f"## Quality ({len(s['seeds'])} seed{'s' if len(s['seeds']) > 1 else ''}, {s['steps']} steps, rank {s['rank']})",
        "",
        "| method | trainable parameters | per added task | "
        + " | ".join(f"{t} ({metrics[t]})" for t in tasks)
        + " | average |",
        "| --- | --- | --- | " + " | ".join("---" for _ in tasks) + " | --- |",
    ]
    for method, entry in summary.items():
        cells = [f"{entry['tasks'][t]['mean']:.3f} ± {entry['tasks'][t]['std']:.3f}" for t in tasks]
        avg = entry["average"]
        lines.append(
            f"| {quality.LABELS[method]} | {entry['trainable_parameters']:,} | {entry['parameters_per_added_task']:,} | "
            + " | ".join(cells)
            + f" | {avg['mean']:.3f} ± {avg['std']:.3f} |"
        )
    majority = results["quality"]["runs"][0]["majority"]
    lines.append(
        "| majority class | - | - | "
        + " | ".join(f"{majority[t]:.3f}" if majority[t] is not None else "-" for t in tasks)
        + " | - |"
    )
    lines += [
        "",
        f"MiniLM-L6 base, LoRA rank {s['rank']} on its default target modules, batch 16, {s['max_length']} tokens, "
        f"learning rate 1e-3; hypernetwork generator width {s['generator_width']}. Steps the sampler gave each "
        f"task{' in seed ' + str(s['seeds'][0]) if len(s['seeds']) > 1 else ''} (each per-task LoRA trains that many): "
        + ", ".join(f"{t} {n}" for t, n in steps.items())
        + f". Test split, first {s['max_eval']} examples of each task; mean ± standard deviation over seeds "
        + ", ".join(str(x) for x in s["seeds"])
        + ".",
    ]
    step, inf, mem, gen = (
        results["training_step"],
        results["inference"],
        results["memory"],
        results["generation_ms"],
    )
    sec = step["seconds"]
    lines += [
        "",
        "## Speed and memory (ratios to peft LoRA, measured side by side)",
        "",
        f"At the library's default generator width (128), on trec_coarse batches; medians of {s['repeats']} "
        "interleaved repeats after warm-up; memory in fresh processes.",
        "",
        "| figure | hyperadapt | peft LoRA | ratio |",
        "| --- | --- | --- | --- |",
        f"| training step, rank {s['rank']}, batch 16 x {s['max_length']} tokens (ms) | {1000 * sec['hyperadapt']:.1f} | "
        f"{1000 * sec['peft_lora']:.1f} | {step['ratio']:.3f} |",
        f"| generator's share of the step (forward + backward) | {100 * step['generator_share']:.1f} % | - | - |",
        f"| inference, exported adapter under peft vs peft LoRA, batch 32 (ms) | "
        f"{inf['milliseconds']['exported_adapter_peft']:.1f} | {inf['milliseconds']['peft_lora']:.1f} | "
        f"{inf['exported_over_peft_lora']:.3f} |",
        f"| inference, merged weights vs base model (ms) | {inf['milliseconds']['merged']:.1f} | "
        f"{inf['milliseconds']['base_model']:.1f} (base) | {inf['merged_over_base']:.3f} |",
        f"| peak resident memory while training, {mem['steps']} steps (MB) | {mem['peak_mb']['hyperadapt']:.0f} | "
        f"{mem['peak_mb']['peft_lora']:.0f} | {mem['ratio']:.3f} |",
        "",
        f"Generating an adapter: {gen['from_name']:.2f} ms from a task name, {gen['from_description']:.2f} ms from a "
        "new description (encoding it included).",
        "",
        "## Scaling",
        "",
        f"Tasks: MiniLM-L6, generator width {s['generator_width']}, random batches of 8 x 32 tokens.",
        "",
        "| tasks | hyperadapt parameters | peft LoRAs (sum) | hyperadapt step (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for row in results["scaling"]["tasks"]:
        lines.append(
            f"| {row['tasks']} | {row['hyperadapt_parameters']:,} | {row['peft_lora_parameters']:,} | "
            f"{row['hyperadapt_step_ms']:.1f} |"
        )
    for key in ("rank", "layers"):
        lines += [
            "",
            f"| {key} | hyperadapt parameters | generator | peft LoRA | step ratio |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in results["scaling"][key]:
            lines.append(
                f"| {row[key]} | {row['hyperadapt_parameters']:,} | {row['generator_parameters']:,} | "
                f"{row['peft_lora_parameters']:,} | {row['step_ratio']:.3f} |"
            )
    env = results["environment"]
    took = results.get("seconds", {})
    lines += [
        "",
        "Rank and depth rows use random 4-layer (resp. N-layer) BERTs of hidden size 128, batch 8 x 32 tokens. "
        + (
            "Time taken: "
            + ", ".join(f"{k.replace('_', ' ')} {v / 60:.1f} min" for k, v in took.items())
            + ". "
            if took
            else ""
        )
        + f"{env['date']}; {env['cpus']} CPUs ({env['processor']}), {env['torch_threads']} torch threads; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
        + ".",
    ]
    return "\n".join(lines) + "\n"


# What the full run and --quick use for the settings not given on the command line.
FULL = {
    "tasks": quality.GLUE_LIKE,
    "seeds": [0, 1, 2],
    "steps": 600,
    "max_eval": 400,
    "repeats": 20,
    "memory_steps": 20,
    "task_counts": [1, 2, 5, 10, 20, 40],
    "ranks": [2, 4, 8, 16, 32],
    "depths": [2, 4, 8, 12, 24],
}
QUICK = {
    "tasks": ["glue_sst2", "glue_rte", "glue_stsb", "trec_coarse"],
    "seeds": [0],
    "steps": 100,
    "max_eval": 100,
    "repeats": 5,
    "memory_steps": 5,
    "task_counts": [1, 5, 20],
    "ranks": [4, 16],
    "depths": [2, 8],
}
SPEED_TASK = "trec_coarse"  # the batches of the speed and memory figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def default(name: str) -> str:
        full, quick = FULL[name], QUICK[name]
        show = (lambda v: " ".join(map(str, v))) if isinstance(full, list) else str
        return f"(default {show(full)}; --quick: {show(quick)})"

    parser.add_argument("--data", default=str(DEFAULT_DATA), help="task folders (default: ../shared/data)")
    parser.add_argument("--tasks", nargs="+", help="quality tasks, folders under --data " + default("tasks"))
    parser.add_argument("--seeds", type=int, nargs="+", help="quality seeds " + default("seeds"))
    parser.add_argument(
        "--steps", type=int, help="training steps of each multi-task model " + default("steps")
    )
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank of every contender (default 8)")
    parser.add_argument(
        "--generator-width",
        type=int,
        default=32,
        help="the hypernetwork's generator width in quality and scaling (default 32)",
    )
    parser.add_argument("--max-length", type=int, default=64, help="tokens per input (default 64)")
    parser.add_argument("--max-eval", type=int, help="test examples per task " + default("max_eval"))
    parser.add_argument("--repeats", type=int, help="interleaved timing repeats " + default("repeats"))
    parser.add_argument(
        "--memory-steps", type=int, help="training steps of the memory runs " + default("memory_steps")
    )
    parser.add_argument(
        "--task-counts", type=int, nargs="+", help="scaling: numbers of tasks " + default("task_counts")
    )
    parser.add_argument("--ranks", type=int, nargs="+", help="scaling: LoRA ranks " + default("ranks"))
    parser.add_argument(
        "--depths", type=int, nargs="+", help="scaling: numbers of layers " + default("depths")
    )
    parser.add_argument(
        "--out", default="bench/results/report", help="the report folder (default bench/results/report)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test in under 5 minutes: the --quick values above for every setting not given",
    )


def settle(args) -> None:
    """Fill in the settings not given (full run or --quick), then check them all before anything runs.

    Raises:
        HyperAdaptError: naming the option and the fix.
    """
    from hyperadapt.data import load_task_folder
    from hyperadapt.errors import HyperAdaptError

    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("steps", "rank", "generator_width", "max_eval", "repeats", "memory_steps"):
        if getattr(args, name) < 1:
            raise HyperAdaptError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(args, name)}")
    for name in ("task_counts", "ranks", "depths"):
        bad = [v for v in getattr(args, name) if v < 1]
        if bad:
            raise HyperAdaptError(f"--{name.replace('_', '-')} takes numbers of 1 or more, got {bad}")
    bad = [s for s in args.seeds if not 0 <= s < 2**32]
    if bad:
        raise HyperAdaptError(f"--seeds must lie in 0..{2**32 - 1}, got {bad}")
    if not 8 <= args.max_length <= 512:
        raise HyperAdaptError(
            f"--max-length must be between 8 and 512 (MiniLM's positions), got {args.max_length}"
        )
    data = Path(args.data)
    if not data.is_dir():
        raise HyperAdaptError(f"--data {data} does not exist; give the folder that holds the task folders")
    missing = [t for t in [*args.tasks, SPEED_TASK] if not (data / t / "task.json").is_file()]
    if missing:
        need = f" ({SPEED_TASK} gives the speed and memory batches)" if SPEED_TASK in missing else ""
        fix = "pass --data" if args.quick or SPEED_TASK in missing else "pass --data or --tasks"
        raise HyperAdaptError(f"{sorted(set(missing))} are not task folders under {data}{need}; {fix}")
    if len(set(args.tasks)) != len(args.tasks):
        raise HyperAdaptError(f"--tasks names a task twice: {args.tasks}")
    for name in args.tasks:
        spec = load_task_folder(data / name).spec
        if spec.is_token_level:
            raise HyperAdaptError(
                f"{name} is a token_classification task; bench run compares sentence, pair and regression tasks"
            )
    check_out_folder(args.out)


def main(args) -> None:
    settle(args)
    results = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results["plots"] = plots(results, out)
    write_report(out, results, markdown(results))
