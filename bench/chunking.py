"""Chunked generation: the generator's size and step time as the base model's hidden size grows.

    python -m bench chunking           # hidden sizes 128 .. 1024 (about 3 min on 2 cores)
    python -m bench chunking --quick

For each hidden size a random 2-layer BERT of that width (4x feed-forward, 64-dimensional heads)
gets LoRA rank 8 on query and value, and bottleneck adapters (size 8, Houlsby); the hypernetwork
is built with whole-tensor output heads and with chunked ones. Reported: the generator's
parameters (trunk and output heads; chunked also counts its chunk embeddings), the time of one
adapter generation, and of one training step (generation, base forward, backward, AdamW) on 8
sequences of 32 tokens, timed interleaved in this process, with a peft LoRA step for reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.common import environment, write_report
from bench.steps import hypernetwork_step, interleaved_medians, peft_lora_step
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec

SPEC = TaskSpec("task", "sequence_classification", ["sentence"], labels=["a", "b"])


def _bert(hidden: int):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=1000,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        num_labels=2,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config).eval().requires_grad_(False)


def run(args) -> dict:
    results: dict = {"settings": vars(args).copy(), "rows": []}
    torch.manual_seed(0)
    inputs = {
        "input_ids": torch.randint(5, 1000, (8, 32)),
        "attention_mask": torch.ones(8, 32, dtype=torch.long),
    }
    labels = torch.randint(0, 2, (8,))
    for hidden in args.hidden_sizes:
        for adapter in ("lora", "bottleneck"):
            contenders, row = {}, {"hidden_size": hidden, "adapter": adapter}
            generators = {}
            for chunk in (None, args.chunk_size):
                config = HyperNetConfig(adapter=adapter, generator_chunk_size=chunk)
                step, generate, hypernet = hypernetwork_step(config, [SPEC], _bert(hidden), inputs, labels)
                label = "chunked" if chunk else "whole"
                contenders[f"{label} step"], contenders[f"{label} generation"] = step, generate
                generators[label] = hypernet.generator_parameters()
            peft_step, _ = peft_lora_step(_bert(hidden), SPEC, inputs, labels)
            contenders["peft LoRA step"] = peft_step
            times = interleaved_medians(contenders, args.repeats)
            row.update(
                {
                    "generator_parameters": generators,
                    "milliseconds": {k: round(1000 * v, 2) for k, v in times.items()},
                }
            )
            results["rows"].append(row)
            print(row, flush=True)
    results["environment"] = environment()
    return results


def markdown(results: dict) -> str:
    lines = [
        "| adapter | hidden size | generator parameters, whole | chunked | generation ms, whole | chunked | "
        "step ms, whole | chunked | peft LoRA step ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        g, ms = row["generator_parameters"], row["milliseconds"]
        lines.append(
            f"| {row['adapter']} | {row['hidden_size']} | {g['whole']:,} | {g['chunked']:,} | "
            f"{ms['whole generation']:.2f} | {ms['chunked generation']:.2f} | {ms['whole step']:.1f} | "
            f"{ms['chunked step']:.1f} | {ms['peft LoRA step']:.1f} |"
        )
    s, env = results["settings"], results["environment"]
    lines += [
        "",
        f"Random 2-layer BERTs; LoRA rank 8 on query/value, bottleneck size 8 (Houlsby); generator width 128; "
        f"chunks of {s['chunk_size']} entries. Medians of {s['repeats']} interleaved repeats, batch 8 x 32 tokens. "
        f"{env['date']}, {env['cpus']} CPUs, torch {env['versions']['torch']}.",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[128, 256, 512, 768, 1024])
    parser.add_argument("--chunk-size", type=int, default=512, help="(default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=15, help="(default: %(default)s)")
    parser.add_argument("--out", default="bench/results/chunking", help="(default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="hidden sizes 128 and 512, 5 repeats")


def main(args) -> None:
    if args.quick:
        args.hidden_sizes, args.repeats = [128, 512], 5
    results = run(args)
    write_report(Path(args.out), results, markdown(results))
