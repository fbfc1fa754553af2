"""Which task each training step trains, and which of its examples: seeded, resumable draws.

Every process of a job builds these from the same seeds, so all draw the same task and the same
global batch at every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TaskSampler:
    """Draws the task of each step: ``p(task) ~ size ** (1 / temperature)``.

    Args:
        sizes: Training examples per task.
        temperature: 1 samples in proportion to size; larger values flatten towards uniform.
        seed: Seeds the sampler's own generator, so every process draws the same sequence.
    """

    def __init__(self, sizes: list[int], temperature: float, seed: int):
        weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
        self.probabilities = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> int:
        return int(self.rng.choice(len(self.probabilities), p=self.probabilities))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class TaskBatches:
    """Endless shuffled single-task batches, reshuffled each epoch from a seeded generator.

    Args:
        examples: The task's training examples.
        batch_size: Examples per batch (fewer when the task has fewer).
        seed: Seeds the shuffles.
        multiple_of: Batch sizes are kept a multiple of this (the number of processes, which
            split each batch into equal shares).
    """

    def __init__(self, examples: list[dict], batch_size: int, seed: int, multiple_of: int = 1):
        self.examples = examples
        self.batch_size = min(batch_size, len(examples) - len(examples) % multiple_of)
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []
        self.position = 0
        self.epoch = 0

    def next(self) -> list[dict]:
        if self.position + self.batch_size > len(self.order):
            self.order = self.rng.permutation(len(self.examples)).tolist()
            self.position = 0
            self.epoch += 1
        chunk = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return [self.examples[i] for i in chunk]

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order,
            "position": self.position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position, self.epoch = state["order"], state["position"], state["epoch"]
