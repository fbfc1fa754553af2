"""Recipe settings carried out through accelerate: trackers, gradient accumulation, mixed precision."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml

from hyperadapt.cli import main

from .conftest import tiny_recipe


def test_tensorboard_gets_loss_learning_rate_metrics_and_adapter_norms_per_task(
    tiny_bert, task_dirs, tmp_path, monkeypatch
):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import hyperadapt.training as training
    from hyperadapt.recipe import parse_recipe

    draws = {"n": 0}
    original = training.TaskSampler.__call__

    def counted(self):
        draws["n"] += 1
        return original(self)

    monkeypatch.setattr(training.TaskSampler, "__call__", counted)
    data = tiny_recipe(
        tiny_bert, task_dirs, tmp_path / "run", steps=6, eval_every=3, log_every=1,
        gradient_accumulation_steps=2, report_to=["tensorboard"],
    )  # fmt: skip
    result = training.train(parse_recipe(data), show_progress=False)
    assert draws["n"] == 12  # two batches (each of its own task) per optimiser step
    events = EventAccumulator(str(result.output_dir / "logs" / "hyperadapt"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for task in ("single", "pair", "score"):
        assert f"adapter_norm/{task}" in tags
    assert {
        "train/loss",
        "train/learning_rate",
        "eval/mean",
        "eval/single/accuracy",
        "eval/score/pearson",
    } <= tags
    rates = [(e.step, e.value) for e in events.Scalars("train/learning_rate")]
    assert [step for step, _ in rates] == [1, 2, 3, 4, 5, 6]
    # The linear schedule counts optimiser steps, not batches: it reaches zero at the last step.
    assert rates[-1][1] == pytest.approx(0.0, abs=1e-12) and rates[0][1] > rates[1][1] > 0
    norms = [e.value for e in events.Scalars("adapter_norm/single")]
    assert len(norms) == 2 and all(n > 0 for n in norms)
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))


def test_bf16_mixed_precision_trains_on_cpu(tiny_bert, task_dirs, tmp_path, caplog):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    caplog.set_level(logging.INFO, logger="hyperadapt")
    data = tiny_recipe(tiny_bert, task_dirs, tmp_path / "run", steps=3, mixed_precision="bf16")
    result = train(parse_recipe(data), show_progress=False)
    assert "mixed precision bf16" in caplog.text
    assert result.metrics["single"]["accuracy"] >= 0
    # The saved hypernetwork stays in float32 (autocast only changes how it is computed).
    from safetensors.torch import load_file

    weights = load_file(result.hypernetwork_dir / "model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float32}
    assert json.loads((result.output_dir / "metrics.json").read_text())["world_size"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused on CPU only")
def test_fp16_on_a_machine_without_gpu_is_one_clear_error(tiny_bert, task_dirs, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    data = tiny_recipe(tiny_bert, task_dirs, tmp_path / "run", steps=1, mixed_precision="fp16")
    recipe.write_text(yaml.safe_dump(data))
    assert main(["train", str(recipe), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hyperadapt: error: training.mixed_precision 'fp16' needs a GPU; on CPU use 'bf16' or 'no'"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("training.report_to=[tensorbord]", "unknown tracker 'tensorbord'; did you mean 'tensorboard'?"),
        ("training.save_every=-2", "training.save_every must be an integer >= 0"),
        ("training.save_total_limit=0", "training.save_total_limit must be a positive integer"),
        ("training.mixed_precision=bf15", "training.mixed_precision must be 'no', 'bf16' or 'fp16'"),
    ],
)
def test_bad_training_settings_are_refused_before_training(
    tiny_bert, task_dirs, tmp_path, capsys, override, expected
):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, task_dirs, tmp_path / "run", steps=1)))
    assert main(["train", str(recipe), "--no-progress", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hyperadapt: error: ") and expected in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "hypernetwork",
    [
        {"conditioning": []},  # one shared LoRA, with a head per task: the multi-task baseline
        {"conditioning": ["name", "description"], "condition_dropout": 0.5, "text_encoder": None},
    ],
)
def test_task_heads_work_whatever_the_adapter_is_conditioned_on(tiny_bert, task_dirs, tmp_path, hypernetwork):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.runtime import load_hypernetwork
    from hyperadapt.training import train

    data = tiny_recipe(tiny_bert, task_dirs, tmp_path / "run", steps=6)
    if hypernetwork.get("text_encoder", 0) is None:
        hypernetwork = {**hypernetwork, "text_encoder": tiny_bert}
    data["hypernetwork"].update(hypernetwork)
    result = train(parse_recipe(data), show_progress=False)
    hypernet = load_hypernetwork(result.hypernetwork_dir)
    assert set(result.metrics) == {"single", "pair", "score"}
    if not hypernet.config.conditioning:  # unconditioned: every task gets the same adapter
        a, b = hypernet("single")[0], hypernet("pair")[0]
        assert all(torch.equal(x, y) for k in a for x, y in zip(a[k], b[k]))


def test_a_regression_head_starts_at_the_mean_of_its_training_targets(tiny_bert, task_dirs, tmp_path):
    from hyperadapt.data import load_task_folder
    from hyperadapt.evaluation import encode
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.runtime import Runtime, load_hypernetwork
    from hyperadapt.training import train

    # One step at a learning rate too small to move anything: what is left is the initial head.
    data = tiny_recipe(
        tiny_bert, {"score": task_dirs["score"]}, tmp_path / "run", steps=1, learning_rate=1e-9
    )
    train(parse_recipe(data), show_progress=False)
    runtime = Runtime(load_hypernetwork(tmp_path / "run" / "hypernetwork"))
    task = load_task_folder(task_dirs["score"])
    examples = task.splits["train"]
    targets = torch.tensor([ex["label"] for ex in examples])
    adapters, head = runtime.hypernet("score")
    with torch.no_grad():
        predictions = runtime.adapted(adapters, head, **encode(runtime.tokenizer, task.spec, examples, 32))
    # The targets lie in [0, 5] with mean about 2.5; a zero-initialised bias would predict about 0.
    assert abs(predictions.squeeze(-1).mean().item() - targets.mean().item()) < 0.1
