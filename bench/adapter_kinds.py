"""Adapter kinds side by side: what each trains, how well, and how fast, against peft LoRA per task.

    python -m bench kinds            # the quickstart tasks, 600 steps per model (about 25 min on 2 cores)
    python -m bench kinds --quick    # 80 steps, small evaluations (about 5 min)

One hypernetwork per kind is trained with its recipe (LoRA: recipes/quickstart.yaml, also with
chunked generation; (IA)^3: recipes/ia3.yaml; bottleneck adapters: recipes/bottleneck.yaml, with
Houlsby and Pfeiffer placement), all for the same number of steps on the three quickstart tasks;
a peft LoRA of the same rank is trained on each task alone for that many steps (so it sees three
times as many examples of its task). Every model is scored on the tasks' test splits. The
training step time of each (same batch: 16 examples of up to 64 tokens) is timed side by side in
this process, interleaved, after warm-up, and reported as a ratio to the peft LoRA step.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bench.common import environment, write_report
from bench.peft_lora import evaluate_peft, train_peft_lora
from bench.steps import fresh_base, hypernetwork_step, interleaved_medians, peft_lora_step
from hyperadapt.base_model import load_tokenizer
from hyperadapt.cards import adapter_parameters
from hyperadapt.evaluation import encode, evaluate_hypernetwork, labels_tensor
from hyperadapt.recipe import load_recipe
from hyperadapt.runtime import Runtime, load_hypernetwork
from hyperadapt.training import train

VARIANTS = {
    "LoRA r8": ("recipes/quickstart.yaml", []),
    "LoRA r8, chunked (512)": ("recipes/quickstart.yaml", ["hypernetwork.generator_chunk_size=512"]),
    "(IA)^3": ("recipes/ia3.yaml", []),
    "bottleneck 8, Houlsby": ("recipes/bottleneck.yaml", []),
    "bottleneck 8, Pfeiffer": ("recipes/bottleneck.yaml", ["hypernetwork.bottleneck_placement=pfeiffer"]),
}
PEFT = "peft LoRA r8, one per task"


def run(args) -> dict:
    settings = {"steps": args.steps, "max_eval": args.max_eval, "repeats": args.repeats, "seed": args.seed}
    results: dict = {"settings": settings, "variants": {}}
    recipes = {}
    for name, (path, overrides) in VARIANTS.items():
        recipes[name] = load_recipe(
            path,
            [
                *overrides,
                f"seed={args.seed}",
                f"training.max_steps={args.steps}",
                "training.eval_every=0",
                "training.save_every=0",
                "export_adapters=false",
            ],
        )
    tasks = recipes["LoRA r8"].load_tasks()
    max_length = recipes["LoRA r8"].training.max_length
    evals = {"split": "test", "max_examples": args.max_eval, "max_length": max_length}

    for name, recipe in recipes.items():
        print(f"training hyperadapt {name} ({args.steps} steps)", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = train(recipe, output_dir=Path(tmp) / "run", show_progress=False)
            hypernet = load_hypernetwork(out.hypernetwork_dir)
        runtime = Runtime(hypernet)
        scores = {
            t.name: evaluate_hypernetwork(hypernet, runtime.adapted, runtime.tokenizer, t, **evals)[
                t.spec.main_metric
            ]
            for t in tasks
        }
        results["variants"][name] = {
            "kind": hypernet.config.adapter,
            "scores": scores,
            "trainable_parameters": hypernet.num_parameters(),
            "generator_parameters": hypernet.generator_parameters(),
            "adapter_parameters_per_task": adapter_parameters(hypernet.config),
            "train_seconds": round(out.seconds, 1),
        }

    base_model = recipes["LoRA r8"].hypernetwork.base_model
    peft_scores, peft_params = {}, 0
    for task in tasks:
        print(f"training {PEFT}: {task.name} ({args.steps} steps)", flush=True)
        model, tokenizer = train_peft_lora(
            task, base_model, steps=args.steps, seed=args.seed, max_length=max_length
        )
        peft_scores[task.name] = evaluate_peft(model, tokenizer, task, "test", args.max_eval, max_length)[
            task.spec.main_metric
        ]
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        peft_params += trainable
    results["variants"][PEFT] = {
        "kind": "peft lora",
        "scores": peft_scores,
        "trainable_parameters": peft_params,
        # The same rank on the same modules as the hypernetwork's LoRA.
        "adapter_parameters_per_task": results["variants"]["LoRA r8"]["adapter_parameters_per_task"],
    }

    print(f"timing training steps ({args.repeats} interleaved repeats)", flush=True)
    results["step_seconds"] = step_times(recipes, tasks, base_model, max_length, args.repeats)
    for name, seconds in results["step_seconds"].items():
        results["variants"][name]["step_seconds"] = seconds
        results["variants"][name]["step_ratio_to_peft_lora"] = seconds / results["step_seconds"][PEFT]
    results["majority_baseline"] = {t.name: t.majority_baseline("test", args.max_eval) for t in tasks}
    results["environment"] = environment()
    return results


def step_times(
    recipes: dict, tasks: list, base_model: str, max_length: int, repeats: int
) -> dict[str, float]:
    task = tasks[-1]  # trec_coarse: six classes
    examples = task.splits["train"][:16]
    tokenizer = load_tokenizer(base_model)
    inputs = dict(encode(tokenizer, task.spec, examples, max_length))
    labels = labels_tensor(task.spec, examples)
    specs = [task.spec] + [t.spec for t in tasks if t is not task]
    contenders = {}
    for name, recipe in recipes.items():
        step, _, _ = hypernetwork_step(recipe.hypernetwork, specs, fresh_base(base_model, 1), inputs, labels)
        contenders[name] = step
    contenders[PEFT], _ = peft_lora_step(
        fresh_base(base_model, task.spec.num_outputs), task.spec, inputs, labels
    )
    torch.manual_seed(0)
    return interleaved_medians(contenders, repeats)


def markdown(results: dict) -> str:
    variants = results["variants"]
    tasks = list(next(iter(variants.values()))["scores"])
    lines = [
        "| adapter | trainable parameters (all tasks) | adapter parameters per task | "
        + " | ".join(tasks)
        + " | mean | step time (ms) | step / peft LoRA |",
        "| --- | --- | --- | " + " | ".join("---" for _ in tasks) + " | --- | --- | --- |",
    ]
    for name, v in variants.items():
        scores = [v["scores"][t] for t in tasks]
        label = name if name == PEFT else f"hyperadapt {name}"
        lines.append(
            f"| {label} | {v['trainable_parameters']:,} | {v['adapter_parameters_per_task']:,} | "
            + " | ".join(f"{s:.3f}" for s in scores)
            + f" | {sum(scores) / len(scores):.3f} | {1000 * v['step_seconds']:.0f} | {v['step_ratio_to_peft_lora']:.2f} |"
        )
    majority = results["majority_baseline"]
    lines.append(
        "| majority class | - | - | " + " | ".join(f"{majority[t]:.3f}" for t in tasks) + " | - | - | - |"
    )
    s, env = results["settings"], results["environment"]
    lines += [
        "",
        f"Test-split accuracy; {s['steps']} training steps per model (batch 16, max length 64, seed {s['seed']}); "
        f"each peft LoRA trains on its task alone for the same steps. Step time: median of {s['repeats']} "
        "interleaved steps on one batch of 16 trec_coarse examples (generation, frozen base, backward, AdamW). "
        f"{env['date']}, {env['cpus']} CPUs ({env['processor']}), torch {env['versions']['torch']}, "
        f"peft {env['versions']['peft']}.",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--steps", type=int, default=600, help="training steps per model (default: %(default)s)"
    )
    parser.add_argument("--max-eval", type=int, default=None, help="test examples per task (default: all)")
    parser.add_argument(
        "--repeats", type=int, default=20, help="timed steps per model (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/kinds", help="(default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="80 steps, 300 test examples, 5 timed steps")


def main(args) -> None:
    if args.quick:
        args.steps, args.max_eval, args.repeats = 80, 300, 5
    results = run(args)
    write_report(Path(args.out), results, markdown(results))
