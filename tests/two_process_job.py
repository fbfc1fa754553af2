"""Run a training recipe as a two-process job with ``accelerate.debug_launcher`` (gloo on CPU).

Started by the tests in a fresh interpreter: the launcher forks, and a fork of a process that has
already run torch in several threads can wait forever on a lock no thread will release.

    python tests/two_process_job.py same|seed-per-rank RECIPE.json WEIGHTS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run(mode: str, data: dict, weights_dir: str) -> None:
    import torch
    import torch.distributed as dist
    from safetensors.torch import save_file

    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    torch.set_num_threads(1)  # one thread per process, as torchrun gives each rank
    rank = dist.get_rank()  # the launcher has formed the process group
    if mode == "seed-per-rank":
        data = {**data, "seed": rank}
    result = train(parse_recipe(data), show_progress=False)
    state = {k: v.contiguous() for k, v in result.hypernetwork.state_dict().items()}
    save_file(state, f"{weights_dir}/rank{rank}.safetensors")
    info = {"world_size": result.world_size, "process_index": result.process_index}
    Path(weights_dir, f"rank{rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    from accelerate import debug_launcher

    mode, recipe, weights = sys.argv[1:]
    debug_launcher(run, args=(mode, json.loads(Path(recipe).read_text()), weights), num_processes=2)
