"""How the hypernetwork's size and step time grow with tasks, rank and depth, against peft LoRAs."""

from __future__ import annotations

import torch

from bench.steps import fresh_base, hypernetwork_step, interleaved_medians, peft_lora_step
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec


def _specs(n: int) -> list[TaskSpec]:
    return [
        TaskSpec(f"task_{i}", "sequence_classification", ["sentence"], labels=["a", "b"]) for i in range(n)
    ]


def _tiny_bert(layers: int, hidden: int = 128):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=1000,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        num_labels=2,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config).eval().requires_grad_(False)


def random_batch():
    """8 sequences of 32 random token ids (within every vocabulary used here) and binary labels."""
    torch.manual_seed(0)
    ids = torch.randint(5, 1000, (8, 32))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.randint(0, 2, (8,))


def by_tasks(
    base_model: str,
    counts: list[int],
    repeats: int,
    inputs: dict,
    labels: torch.Tensor,
    generator_width: int = 32,
) -> list[dict]:
    """Hypernetwork parameters and step time for 1..N tasks, against N separate peft LoRAs (with heads)."""
    rows, contenders = [], {}
    peft_step, per_task = peft_lora_step(fresh_base(base_model, 2), _specs(1)[0], inputs, labels)
    for n in counts:
        step, _, hypernet = hypernetwork_step(
            HyperNetConfig(base_model=base_model, generator_width=generator_width),
            _specs(n),
            fresh_base(base_model, 1),
            inputs,
            labels,
        )
        contenders[n] = step
        rows.append(
            {
                "tasks": n,
                "hyperadapt_parameters": hypernet.num_parameters(),
                "peft_lora_parameters": n * per_task,
            }
        )
    times = interleaved_medians(
        {**{f"hyperadapt_{n}": s for n, s in contenders.items()}, "peft_lora": peft_step}, repeats
    )
    for row in rows:
        row["hyperadapt_step_ms"] = round(1000 * times[f"hyperadapt_{row['tasks']}"], 2)
        row["peft_lora_step_ms"] = round(1000 * times["peft_lora"], 2)
    return rows


def _against_peft(key: str, value: int, config: HyperNetConfig, layers: int, rank: int, repeats: int) -> dict:
    """One row: a hypernetwork and a peft LoRA on the same tiny BERT, sizes and step-time ratio."""
    inputs, labels = random_batch()
    spec = _specs(1)[0]
    step, _, hypernet = hypernetwork_step(config, [spec], _tiny_bert(layers), inputs, labels)
    peft_step, peft_params = peft_lora_step(_tiny_bert(layers), spec, inputs, labels, rank=rank)
    times = interleaved_medians({"hyperadapt": step, "peft_lora": peft_step}, repeats)
    return {
        key: value,
        "hyperadapt_parameters": hypernet.num_parameters(),
        "generator_parameters": hypernet.generator_parameters(),
        "peft_lora_parameters": peft_params,
        "step_ratio": times["hyperadapt"] / times["peft_lora"],
    }


def by_rank(ranks: list[int], repeats: int) -> list[dict]:
    """Tiny 4-layer BERT (hidden 128): generator size and step time against peft LoRA, by rank."""
    return [
        _against_peft("rank", r, HyperNetConfig(lora_rank=r, lora_alpha=2.0 * r), 4, r, repeats)
        for r in ranks
    ]


def by_layers(depths: list[int], repeats: int) -> list[dict]:
    """Tiny BERTs (hidden 128) of growing depth: the generator stays the same size, LoRA grows."""
    return [_against_peft("layers", n, HyperNetConfig(), n, 8, repeats) for n in depths]
