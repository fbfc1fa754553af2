"""Cost of training on a causal LM: the hypernetwork against a peft LoRA, with and without
gradient checkpointing.

    python -m bench decoder-cost
    python -m bench decoder-cost --quick

One training step on a batch of real prompts (a task of ../shared/data rendered as the decoder
recipe renders it): the generated LoRA (hyperadapt), the same with
``training.gradient_checkpointing``, the same again with the frozen base in bfloat16
(``training.base_dtype``), and a plain peft LoRA of the same rank on the same modules (float32),
each scoring the answer tokens only. Step times are medians measured side by side in one process
(interleaved after warm-up) and given as ratios to the peft LoRA; peak resident memory while
training is measured for each in a fresh process (after the model is loaded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from bench.common import check_out_folder, environment, write_report
from bench.steps import interleaved_medians
from hyperadapt.errors import HyperAdaptError

KINDS = ("peft_lora", "hyperadapt", "hyperadapt_checkpointing", "hyperadapt_bfloat16_checkpointing")
QUICK = {"batch": 2, "max_length": 96, "repeats": 2, "memory_steps": 1}
FULL = {"batch": 8, "max_length": 192, "repeats": 5, "memory_steps": 3}


def contender(kind: str, base_model: str, task_folder: str, batch: int, max_length: int, rank: int = 8):
    """A training step of one contender on the task's first ``batch`` training prompts."""
    from peft import LoraConfig, get_peft_model

    from hyperadapt.base_model import default_target_modules, load_causal_lm, load_tokenizer
    from hyperadapt.causal_lm import TextToText, target_loss
    from hyperadapt.config import HyperNetConfig
    from hyperadapt.data import load_task_folder
    from hyperadapt.hypernetwork import HyperNetwork
    from hyperadapt.injection import AdaptedModel

    task = load_task_folder(task_folder)
    inputs, labels = TextToText(load_tokenizer(base_model), task.spec, max_length).training_batch(
        task.splits["train"][:batch]
    )
    base = load_causal_lm(base_model, dtype=torch.bfloat16 if "bfloat16" in kind else None)
    if kind == "peft_lora":
        config = LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            lora_dropout=0.0,
            target_modules=default_target_modules(base),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, config).eval()
        params = [p for p in model.parameters() if p.requires_grad]
        inner = model.get_base_model()

        def loss() -> torch.Tensor:
            hidden = inner.model(**inputs, use_cache=False).last_hidden_state
            return target_loss(hidden, inner.get_output_embeddings(), labels)
    else:
        config = HyperNetConfig(
            base_model=base_model, model_class="causal_lm", conditioning=["name"], lora_rank=rank
        )
        hypernet = HyperNetwork.build(config, [task.spec], base)
        adapted = AdaptedModel(base, hypernet.config)
        if kind.endswith("_checkpointing"):
            adapted.enable_gradient_checkpointing()
        params = list(hypernet.parameters())

        def loss() -> torch.Tensor:
            adapters, _ = hypernet(task.name)
            return adapted.target_loss(adapters, labels, **inputs)

    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step() -> None:
        loss().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


MEMORY_CHILD = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from bench.decoder_cost import contender
kind, base_model, folder, batch, max_length, steps = sys.argv[2:8]
step = contender(kind, base_model, folder, int(batch), int(max_length))
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
loaded = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark: loading peaks higher
    f.write("5")
for _ in range(int(steps)):
    step()
print(json.dumps({"training_peak_kb": status("VmHWM"), "after_load_kb": loaded}))
"""


def peak_memory(args) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    out = {}
    for kind in KINDS:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_CHILD,
                root,
                kind,
                args.base_model,
                args.task,
                str(args.batch),
                str(args.max_length),
                str(args.memory_steps),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise HyperAdaptError(f"the memory run of {kind} failed:\n{proc.stderr[-2000:]}")
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = {k: v["training_peak_kb"] / 1024 for k, v in out.items()}
    loaded = {k: v["after_load_kb"] / 1024 for k, v in out.items()}
    # What training adds on top of the loaded model: activations, gradients, optimiser state.
    added = {k: peak[k] - loaded[k] for k in KINDS}
    return {
        "steps": args.memory_steps,
        "peak_mb": {k: round(v, 1) for k, v in peak.items()},
        "after_load_mb": {k: round(v, 1) for k, v in loaded.items()},
        "added_by_training_mb": {k: round(v, 1) for k, v in added.items()},
        "peak_ratio_to_peft_lora": {k: round(peak[k] / peak["peft_lora"], 3) for k in KINDS},
    }


def settle(args) -> None:
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("batch", "repeats", "memory_steps"):
        if getattr(args, name) < 1:
            raise HyperAdaptError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(args, name)}")
    if not 32 <= args.max_length <= 2048:
        raise HyperAdaptError(f"--max-length must be in 32..2048, got {args.max_length}")
    if not (Path(args.task) / "task.json").is_file():
        raise HyperAdaptError(f"--task {args.task} is not a task folder (no task.json); see ../shared/data")
    check_out_folder(args.out)


def run(args) -> dict:
    settle(args)
    steps = {kind: contender(kind, args.base_model, args.task, args.batch, args.max_length) for kind in KINDS}
    seconds = interleaved_medians(steps, repeats=args.repeats, warmup=1)
    del steps
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "step_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "step_ratio_to_peft_lora": {k: round(v / seconds["peft_lora"], 3) for k, v in seconds.items()},
        "memory": peak_memory(args),
        "environment": environment(),
    }


def markdown(results: dict) -> str:
    s, mem = results["settings"], results["memory"]
    lines = [
        "| contender | step (s) | step / peft LoRA | peak memory (MB) | added by training (MB) | peak / peft LoRA |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind in KINDS:
        lines.append(
            f"| {kind} | {results['step_seconds'][kind]:.2f} | {results['step_ratio_to_peft_lora'][kind]:.2f} | "
            f"{mem['peak_mb'][kind]:.0f} | {mem['added_by_training_mb'][kind]:.0f} | "
            f"{mem['peak_ratio_to_peft_lora'][kind]:.2f} |"
        )
    lines += [
        "",
        f"Base {s['base_model']} on CPU, in float32 except for the bfloat16 row; LoRA rank 8 on the same modules; one batch of {s['batch']} "
        f"prompts of {Path(s['task']).name} (up to {s['max_length']} tokens), loss on the answer tokens. Step "
        f"times: medians of {s['repeats']} interleaved steps in one process; memory: peak resident set over "
        f"{s['memory_steps']} steps in a fresh process per contender.",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-model", default="smollm2", help="a causal LM (default: %(default)s)")
    parser.add_argument(
        "--task",
        default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "boolq"),
        help="a task folder whose training prompts make the batch (default: ../shared/data/boolq)",
    )
    parser.add_argument("--batch", type=int, help=f"prompts per step (default: {FULL['batch']})")
    parser.add_argument("--max-length", type=int, help=f"tokens per prompt (default: {FULL['max_length']})")
    parser.add_argument("--repeats", type=int, help=f"timed steps per contender (default: {FULL['repeats']})")
    parser.add_argument(
        "--memory-steps", type=int, help=f"steps per memory run (default: {FULL['memory_steps']})"
    )
    parser.add_argument("--out", default="bench/results/decoder_cost", help="(default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="batch 2, 96 tokens, 2 repeats: a smoke test")


def main(args) -> None:
    results = run(args)
    write_report(Path(args.out), results, markdown(results))
