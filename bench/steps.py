"""Training-step timing, hypernetwork against peft LoRA, measured side by side in one process.

Each contender gets the same batch; after warm-up their steps are interleaved (one step of each
in turn, repeated), so a slow moment of the machine hits them all alike; medians are reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from hyperadapt.base_model import head_module_name, load_sequence_classifier
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec
from hyperadapt.evaluation import task_loss
from hyperadapt.hypernetwork import HyperNetwork
from hyperadapt.injection import AdaptedModel


def hypernetwork_step(
    config: HyperNetConfig, specs: list[TaskSpec], base: torch.nn.Module, inputs: dict, labels: torch.Tensor
) -> tuple[Callable[[], None], Callable[[], None], HyperNetwork]:
    """A training step of a fresh hypernetwork (generation, frozen base, backward, AdamW).

    Returns ``(step, generate, hypernetwork)``; ``generate`` runs the generator alone.
    """
    hypernet = HyperNetwork.build(config, specs, base)
    adapted = AdaptedModel(base, hypernet.config)
    optimizer = torch.optim.AdamW(hypernet.parameters(), lr=1e-4)
    spec = specs[0]

    def step() -> None:
        logits = adapted(*hypernet(spec.name), **inputs)
        task_loss(spec, logits, labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def generate() -> None:
        hypernet(spec.name)

    return step, generate, hypernet


def peft_lora_step(
    base: torch.nn.Module, spec: TaskSpec, inputs: dict, labels: torch.Tensor, rank: int = 8, targets=None
) -> tuple[Callable[[], None], int]:
    """A training step of a peft LoRA with its classifier head (the per-task baseline)."""
    from peft import LoraConfig, get_peft_model

    from hyperadapt.base_model import default_target_modules

    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=targets or default_target_modules(base),
        task_type="SEQ_CLS",
        modules_to_save=[head_module_name(base)],
    )
    model = get_peft_model(base, config)
    model.eval()  # dropout off, as for the hypernetwork's frozen base
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step() -> None:
        task_loss(spec, model(**inputs).logits, labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, sum(p.numel() for p in params)


def interleaved_medians(
    contenders: dict[str, Callable[[], None]], repeats: int, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each contender, timed in turn ``repeats`` times after ``warmup``."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def fresh_base(base_model: str, num_labels: int) -> torch.nn.Module:
    return load_sequence_classifier(base_model, num_labels=num_labels)
