"""Several processes form one data-parallel job (gloo on CPU), and it computes what one process does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from .conftest import tiny_recipe

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))


def _recipe(tiny_bert, task_dirs, out, **training):
    data = tiny_recipe(tiny_bert, task_dirs, out, steps=6, eval_every=3, **training)
    data["hypernetwork"]["dropout"] = 0.1  # the generator's dropout masks must agree across ranks
    return data


def _two_process_job(mode: str, data: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    recipe = tmp_path / f"{mode}.json"
    recipe.write_text(json.dumps(data))
    weights = tmp_path / "weights"
    weights.mkdir(exist_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).with_name("two_process_job.py")),
        mode,
        str(recipe),
        str(weights),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_two_processes_train_one_job_that_matches_one_process_with_the_same_global_batch(
    tiny_bert, task_dirs, tmp_path
):
    from safetensors.torch import load_file

    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    done = _two_process_job("same", _recipe(tiny_bert, task_dirs, tmp_path / "two"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    weights = tmp_path / "weights"
    ranks = [load_file(weights / f"rank{r}.safetensors") for r in (0, 1)]
    infos = [json.loads((weights / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert infos == [{"world_size": 2, "process_index": 0}, {"world_size": 2, "process_index": 1}]
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key

    # One process taking the whole global batch (2 x 8) computes the same weights.
    single = train(
        parse_recipe(_recipe(tiny_bert, task_dirs, tmp_path / "one", batch_size=16)), show_progress=False
    )
    assert single.world_size == 1
    reference = single.hypernetwork.state_dict()
    assert set(reference) == set(ranks[0])
    for key, value in reference.items():
        torch.testing.assert_close(ranks[0][key], value, atol=1e-5, rtol=0, msg=key)
    # And it trained: the weights moved away from their initial values.
    initial = train(
        parse_recipe(_recipe(tiny_bert, task_dirs, tmp_path / "zero", batch_size=16, max_steps=1)),
        show_progress=False,
    ).hypernetwork.state_dict()
    assert any(not torch.allclose(initial[k], reference[k]) for k in reference)


def test_processes_with_different_recipes_stop_with_an_error_naming_the_ranks(tiny_bert, task_dirs, tmp_path):
    done = _two_process_job("seed-per-rank", _recipe(tiny_bert, task_dirs, tmp_path / "run"), tmp_path)
    assert done.returncode != 0
    assert "do not run the same recipe and data (they differ between ranks [1] and 0)" in done.stderr
    assert not (tmp_path / "run").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_accelerate_launch_runs_the_command_line_on_two_cpu_processes(tiny_bert, task_dirs, tmp_path):
    """The README's two-process command, with the shipped launch config."""
    recipe = tmp_path / "recipe.yaml"
    data = _recipe(tiny_bert, {"single": task_dirs["single"]}, tmp_path / "run", save_every=3)
    recipe.write_text(yaml.safe_dump(data))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "recipes" / "accelerate" / "two_cpu_processes.yaml"),
        "--main_process_port", str(_free_port()),
        "-m", "hyperadapt.cli", "train", str(recipe), "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world size 2 (MULTI_CPU, gloo)" in done.stderr
    assert done.stdout.count("best validation") == 1  # the main process reports, once
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_000006" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    assert sorted(
        p.name for p in (tmp_path / "run" / "checkpoints" / "step_000006").glob("random_states_*")
    ) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_launch_config_parses_with_accelerates_loader_and_is_documented(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    assert config.num_processes >= 1
    text = path.read_text()
    assert f"accelerate launch --config_file recipes/accelerate/{path.name}" in text
    assert f"recipes/accelerate/{path.name}" in (REPO / "README.md").read_text()


def test_the_shipped_launch_configs_cover_every_kind_of_job():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {p.stem: load_config_from_file(str(p)) for p in ACCELERATE_CONFIGS}
    assert {k.distributed_type.value for k in kinds.values()} >= {"NO", "MULTI_GPU", "FSDP", "DEEPSPEED"}
    assert kinds["two_cpu_processes"].num_processes == 2 and not kinds["two_cpu_processes"].use_cpu
    assert kinds["multi_node"].num_machines == 2
    assert kinds["deepspeed_zero2"].deepspeed_config["zero_stage"] == 2
