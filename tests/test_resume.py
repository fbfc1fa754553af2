"""Checkpoints and --resume: a run killed at any moment continues to the very weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hyperadapt.cli import main

from .conftest import tiny_recipe


def _recipe_data(tiny_bert, task_dirs, out: Path, **training) -> dict:
    settings = {"eval_every": 4, "save_every": 2, "save_total_limit": 2, **training}
    data = tiny_recipe(tiny_bert, task_dirs, out, steps=12, **settings)
    # Everything that draws random numbers: generator dropout (torch), condition dropout and
    # description draws (numpy), task sampling and batch order.
    data["hypernetwork"].update(
        dropout=0.1,
        conditioning=["name", "description"],
        head="label_semantic",
        text_encoder=tiny_bert,
        condition_dropout=0.3,
    )
    data["tasks"][0]["descriptions"] = ["Is the review positive?", "Tell good reviews from bad ones."]
    return data


def _write_recipe(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hyperadapt.cli",
        "train",
        str(recipe),
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    last = sorted((run / "checkpoints").glob("step_*"))[-1]
    return {
        "final": load_file(run / "hypernetwork" / "model.safetensors"),
        "last checkpoint": load_file(last / "model.safetensors"),
    }


def _assert_same_weights(run: Path, reference: Path) -> None:
    ours, theirs = _weights(run), _weights(reference)
    for which in ours:
        assert set(ours[which]) == set(theirs[which])
        for key, value in theirs[which].items():
            torch.testing.assert_close(ours[which][key], value, atol=1e-6, rtol=0, msg=f"{which}: {key}")


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert, task_dirs, tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("uninterrupted")
    data = _recipe_data(tiny_bert, task_dirs, root / "run")
    recipe = _write_recipe(root, data)
    done = subprocess.run(_cli(recipe, root / "run"), capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return data, root / "run"


def _kill_when(process: subprocess.Popen, ready, delay: float) -> bool:
    """SIGKILL ``process`` ``delay`` seconds after ``ready()`` holds; False if it ended first."""
    while not ready():
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def test_a_run_killed_at_random_moments_and_resumed_ends_with_the_uninterrupted_weights(
    uninterrupted, tmp_path
):
    data, reference = uninterrupted
    out = tmp_path / "run"
    recipe = _write_recipe(tmp_path, {**data, "output_dir": str(out)})
    rng = random.Random(7)
    kills = 0
    # First kill: some time after the second checkpoint; second: anywhere in the resumed run,
    # model loading and checkpoint writing included.
    moments = [
        (lambda: (out / "checkpoints" / "step_000004").is_dir(), rng.uniform(0.0, 0.4)),
        (lambda: True, rng.uniform(0.5, 6.0)),
    ]
    for i, (ready, delay) in enumerate(moments):
        extra = ["--resume"] if i else []
        process = subprocess.Popen(
            _cli(recipe, out, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
        )
        kills += _kill_when(process, ready, delay)
    assert kills >= 1
    if not (out / "metrics.json").exists():  # else the second run finished before its kill
        done = subprocess.run(
            _cli(recipe, out, "--resume", "latest"), capture_output=True, text=True, env=ENV, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_weights(out, reference)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_step"] == json.loads((reference / "metrics.json").read_text())["best_step"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000010", "step_000012"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


class _Crash(Exception):
    pass


def _crash_after(monkeypatch, draws: int) -> None:
    """Make training stop with an exception at the ``draws``-th task draw (mid-step)."""
    import hyperadapt.training as training

    calls = {"n": 0}
    original = training.TaskSampler.__call__

    def draw(self):
        calls["n"] += 1
        if calls["n"] == draws:
            raise _Crash("simulated crash")
        return original(self)

    monkeypatch.setattr(training.TaskSampler, "__call__", draw)


def _unfinished_run(data: dict, monkeypatch, draws: int = 8) -> Path:
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    with monkeypatch.context() as patch:
        _crash_after(patch, draws)
        with pytest.raises(_Crash):
            train(parse_recipe(data), show_progress=False)
    return Path(data["output_dir"])


def test_resume_in_process_continues_from_the_last_complete_checkpoint(uninterrupted, tmp_path, monkeypatch):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data, reference = uninterrupted
    data = {**data, "output_dir": str(tmp_path / "run")}
    # Stopped in step 10: the best evaluation so far (step 8, which stays the best) is only in
    # the checkpoint, so the final weights are right only if the resumed run remembers it.
    out = _unfinished_run(data, monkeypatch, draws=10)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000006", "step_000008"]
    assert json.loads((reference / "metrics.json").read_text())["best_step"] == 8
    # A checkpoint whose writing was interrupted is never taken for one.
    (out / "checkpoints" / ".step_000010.partial").mkdir()
    (out / "checkpoints" / ".step_000010.partial" / "model.safetensors").write_bytes(b"half")
    result = train(parse_recipe(data), show_progress=False, resume="latest")
    assert result.resumed_from == out / "checkpoints" / "step_000008"
    assert result.best_step == 8
    _assert_same_weights(out, reference)
    assert json.loads((out / "metrics.json").read_text())["resumed_from"].endswith("step_000008")


def test_resume_latest_before_the_first_checkpoint_starts_from_step_zero(uninterrupted, tmp_path, caplog):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data, reference = uninterrupted
    out = tmp_path / "run"
    result = train(parse_recipe({**data, "output_dir": str(out)}), show_progress=False, resume="latest")
    assert result.resumed_from is None
    assert "no checkpoint" in caplog.text
    _assert_same_weights(out, reference)


def test_resume_from_a_named_checkpoint_folder(uninterrupted, tmp_path, monkeypatch):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data, reference = uninterrupted
    data = {**data, "output_dir": str(tmp_path / "run")}
    out = _unfinished_run(data, monkeypatch, draws=8)
    older = out / "checkpoints" / "step_000004"
    result = train(parse_recipe(data), show_progress=False, resume=str(older))
    assert result.resumed_from == older
    _assert_same_weights(out, reference)


def test_a_run_killed_between_its_final_renames_finds_its_checkpoints_again(
    uninterrupted, tmp_path, monkeypatch
):
    """The outputs are assembled beside the run folder and the checkpoints moved in last."""
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data, reference = uninterrupted
    data = {**data, "output_dir": str(tmp_path / "run")}
    out = _unfinished_run(data, monkeypatch, draws=8)
    staging = tmp_path / ".run.abc123"
    staging.mkdir()
    os.replace(out / "checkpoints", staging / "checkpoints")
    shutil.rmtree(out)
    train(parse_recipe(data), show_progress=False, resume="latest")
    _assert_same_weights(out, reference)


def _error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hyperadapt: error: "), err
    return err[0]


@pytest.fixture
def unfinished(uninterrupted, tmp_path, monkeypatch) -> tuple[Path, Path]:
    data, _ = uninterrupted
    out = _unfinished_run({**data, "output_dir": str(tmp_path / "run")}, monkeypatch, draws=8)
    return _write_recipe(tmp_path, {**data, "output_dir": str(out)}), out


def test_starting_over_an_unfinished_run_asks_for_resume_or_overwrite(unfinished, capsys):
    recipe, out = unfinished
    message = _error(capsys, ["train", str(recipe), "--no-progress"])
    assert "checkpoints of an unfinished run" in message and "--resume latest" in message
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000004", "step_000006"]


def test_resume_with_a_changed_recipe_names_the_changed_settings(unfinished, capsys):
    recipe, out = unfinished
    message = _error(
        capsys, ["train", str(recipe), "--no-progress", "--resume", "training.learning_rate=5e-4"]
    )
    assert "no such checkpoint folder" in message  # an override cannot follow a bare --resume
    message = _error(
        capsys, ["train", str(recipe), "--no-progress", "training.learning_rate=5e-4", "--resume"]
    )
    assert "different recipe" in message and "training.learning_rate" in message


def test_resume_may_change_how_often_it_logs_and_saves(unfinished, capsys):
    recipe, out = unfinished
    assert main(["train", str(recipe), "--no-progress", "--resume", "latest", "training.log_every=3"]) == 0
    assert (out / "metrics.json").is_file()


def test_resume_may_turn_on_gradient_checkpointing_and_ends_with_the_same_weights(uninterrupted, unfinished):
    _, reference = uninterrupted
    recipe, out = unfinished
    args = [
        "train",
        str(recipe),
        "--no-progress",
        "--resume",
        "latest",
        "training.gradient_checkpointing=true",
    ]
    assert main(args) == 0
    for name, tensor in _weights(reference)["final"].items():
        assert torch.allclose(tensor, _weights(out)["final"][name], atol=1e-6), name


def test_a_finished_run_has_nothing_to_resume(uninterrupted, capsys, tmp_path):
    data, reference = uninterrupted
    recipe = _write_recipe(tmp_path, data)
    message = _error(capsys, ["train", str(recipe), "--output-dir", str(reference), "--resume"])
    assert "has finished" in message


def test_resume_and_overwrite_together_are_refused(unfinished, capsys):
    recipe, _ = unfinished
    message = _error(capsys, ["train", str(recipe), "--resume", "--overwrite"])
    assert "pass only one" in message


@pytest.mark.parametrize(
    "field, value", [("description", "Spot astronomy questions."), ("labels", ["bad", "good"])]
)
def test_resume_after_a_task_json_changed_is_refused(
    tiny_bert, task_dirs, tmp_path, monkeypatch, capsys, field, value
):
    # A task's description and labels feed the conditions (and the attention keys): not the same run.
    folders = {}
    for name, folder in task_dirs.items():
        folders[name] = tmp_path / "tasks" / name
        shutil.copytree(folder, folders[name])
    data = _recipe_data(tiny_bert, {k: str(v) for k, v in folders.items()}, tmp_path / "run")
    out = _unfinished_run(data, monkeypatch, draws=8)
    info_file = folders[next(iter(folders))] / "task.json"
    info = json.loads(info_file.read_text())
    info[field] = value
    info_file.write_text(json.dumps(info))
    recipe = _write_recipe(tmp_path, data)
    capsys.readouterr()  # the first run's log
    message = _error(capsys, ["train", str(recipe), "--no-progress", "--resume"])
    assert "written for other training data" in message and "task.json" in message
    assert not (out / "hypernetwork").exists()


def test_resume_from_a_folder_that_is_not_a_checkpoint(unfinished, capsys, tmp_path):
    recipe, out = unfinished
    assert "no such checkpoint folder" in _error(
        capsys, ["train", str(recipe), "--resume", str(tmp_path / "nope")]
    )
    assert "not a hyperadapt checkpoint" in _error(capsys, ["train", str(recipe), "--resume", str(out)])


@pytest.mark.parametrize(
    "damage, expected",
    [
        (
            lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:100]),
            "cannot be loaded",
        ),
        (lambda c: (c / "trainer_state.json").write_text("{not json"), "damaged"),
        (lambda c: (c / "trainer_state.json").write_text("[]"), "not a hyperadapt trainer state"),
        (lambda c: (c / "optimizer.bin").unlink(), "incomplete (optimizer.bin is missing)"),
        (lambda c: (c / "random_states_0.pkl").unlink(), "no RNG state for process 0"),
        (lambda c: (c / "best.safetensors").write_bytes(b"\x00" * 10), "best.safetensors is corrupt"),
        (lambda c: (c / "best.safetensors").unlink(), "incomplete (best.safetensors is missing)"),
        (lambda c: _add_tensor(c / "best.safetensors"), "best.safetensors does not match the hypernetwork"),
        (lambda c: (c / "random_states_0.pkl").write_bytes(b""), "cannot be loaded (random_states_0.pkl"),
        (lambda c: _edit_state(c, step="6"), "step is '6', not an integer"),
        (lambda c: _edit_state(c, step=20), "step 20 is not within the recipe's 1..12 steps"),
        (lambda c: _edit_state(c, step=4), "step 4 does not match the folder's name"),
        (lambda c: _edit_state(c, world_size="1"), "world_size is '1', not an integer"),
        (lambda c: _edit_state(c, sampler={}), "not a random generator state"),
        (lambda c: _edit_state(c, best=None), "best is not a score"),
        (lambda c: _edit_state(c, running="ab"), "running is not a [sum, count] pair"),
        (lambda c: _edit_state(c, recipe="x"), "recipe is not a recipe"),
        (lambda c: _edit_state(c, streams=lambda v: v[:1]), "batch streams do not fit the recipe's 3 tasks"),
        (
            lambda c: _edit_state(c, streams=lambda v: [{**v[0], "order": [10**6]}, *v[1:]]),
            "batch streams do not fit",
        ),
        (lambda c: _edit_state(c, data_digest="0" * 64), "written for other training data"),
    ],
    ids=[
        "truncated weights",
        "garbled state",
        "wrong state",
        "missing optimizer",
        "missing rng",
        "bad best",
        "best missing",
        "best of another shape",
        "empty rng",
        "step text",
        "step beyond",
        "step not the folder's",
        "world size text",
        "sampler empty",
        "best null",
        "running text",
        "recipe text",
        "streams short",
        "stream index out of range",
        "other data",
    ],
)
def test_a_damaged_checkpoint_gives_one_clear_error(unfinished, capsys, damage, expected):
    recipe, out = unfinished
    damage(out / "checkpoints" / "step_000006")
    message = _error(capsys, ["train", str(recipe), "--no-progress", "--resume"])
    assert expected in message and "step_000006" in message
    assert not (out / "metrics.json").exists()


def _edit_state(checkpoint: Path, **changes) -> None:
    path = checkpoint / "trainer_state.json"
    state = json.loads(path.read_text())
    for key, value in changes.items():
        state[key] = value(state[key]) if callable(value) else value
    path.write_text(json.dumps(state))


def _add_tensor(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({**load_file(path), "extra": torch.zeros(2)}, path)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_checkpoint_whose_pickles_would_run_code_is_refused_without_running_it(
    unfinished, capsys, tmp_path
):
    recipe, out = unfinished
    _Payload.marker = tmp_path / "pwned"
    torch.save(
        {"state": _Payload(), "param_groups": []}, out / "checkpoints" / "step_000006" / "optimizer.bin"
    )
    message = _error(capsys, ["train", str(recipe), "--no-progress", "--resume"])
    assert "cannot be loaded" in message
    assert not _Payload.marker.exists()


def test_resuming_with_another_number_of_processes_is_refused(unfinished):
    from hyperadapt.checkpoints import check_same_world, read_state
    from hyperadapt.errors import HyperAdaptError

    recipe, out = unfinished
    checkpoint = out / "checkpoints" / "step_000006"
    state = read_state(checkpoint)
    with pytest.raises(HyperAdaptError, match="written by 1 process and this run has 2"):
        check_same_world(checkpoint, state, world_size=2)


def test_only_the_last_checkpoints_are_kept(uninterrupted):
    _, reference = uninterrupted
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == ["step_000010", "step_000012"]
    state = json.loads((reference / "checkpoints" / "step_000012" / "trainer_state.json").read_text())
    assert state["step"] == 12 and state["world_size"] == 1
    assert state["best"]["step"] == json.loads((reference / "metrics.json").read_text())["best_step"]


def test_a_second_run_on_the_same_output_folder_is_refused_while_the_first_holds_it(unfinished, capsys):
    from hyperadapt.files import RunLock

    recipe, out = unfinished
    holder = RunLock(out)
    holder.acquire()  # as a run in another process would
    try:
        message = _error(capsys, ["train", str(recipe), "--no-progress", "--resume"])
        assert f"another training run (process {os.getpid()}) is writing to {out}" in message
    finally:
        holder.release()
    assert main(["train", str(recipe), "--no-progress", "--resume"]) == 0  # free again
    assert not holder.path.exists()


def test_a_resumed_run_reports_the_time_of_all_its_parts(unfinished):
    recipe, out = unfinished
    before = json.loads((out / "checkpoints" / "step_000006" / "trainer_state.json").read_text())["seconds"]
    assert before > 0
    assert main(["train", str(recipe), "--no-progress", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["seconds"] >= round(before, 1)


def _resume_run(recipe: Path, *extra: str) -> int:
    return main(["train", str(recipe), "--no-progress", "--resume", *extra])


def test_a_resumed_run_keeps_the_users_files_in_its_folder(unfinished, uninterrupted):
    recipe, out = unfinished
    (out / "notes.txt").write_text("mine")
    (out / "slurm-1.out").write_text("log")
    assert _resume_run(recipe) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "slurm-1.out").is_file()
    _assert_same_weights(out, uninterrupted[1])


def test_resume_into_a_folder_of_other_files_is_refused_before_training(uninterrupted, tmp_path, capsys):
    data, _ = uninterrupted
    out = tmp_path / "theirs"
    (out / "checkpoints" / "checkpoint-500").mkdir(parents=True)
    (out / "notes.txt").write_text("x")
    recipe = _write_recipe(tmp_path, {**data, "output_dir": str(out)})
    message = _error(capsys, ["train", str(recipe), "--no-progress", "--resume"])
    assert "no hyperadapt checkpoint to resume" in message
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-500"]


def test_a_symlinked_output_folder_stays_a_link_to_the_finished_run(uninterrupted, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data, reference = uninterrupted
    real = tmp_path / "elsewhere" / "run"
    real.mkdir(parents=True)
    link = tmp_path / "run"
    link.symlink_to(real)
    train(parse_recipe({**data, "output_dir": str(link)}), show_progress=False)
    assert link.is_symlink() and (real / "metrics.json").is_file()
    _assert_same_weights(link, reference)


def test_resuming_an_earlier_checkpoint_replaces_the_abandoned_later_ones(unfinished, uninterrupted, caplog):
    recipe, out = unfinished  # checkpoints at steps 4 and 6
    assert _resume_run(recipe, str(out / "checkpoints" / "step_000004")) == 0
    assert "continue another branch" in caplog.text
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000010", "step_000012"]
    _assert_same_weights(out, uninterrupted[1])


def test_staging_folders_of_a_killed_final_write_are_cleaned_up(unfinished, tmp_path):
    recipe, out = unfinished
    staging = tmp_path / ".run.k1ll3d00"
    (staging / ".hypernetwork.abcd1234").mkdir(parents=True)
    (staging / "metrics.json").write_text("{}")
    assert _resume_run(recipe) == 0
    assert not staging.exists()


def test_a_tracker_that_is_not_installed_is_refused_before_training(unfinished, capsys, monkeypatch):
    import importlib.util

    recipe, out = unfinished
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    message = _error(
        capsys, ["train", str(recipe), "--no-progress", "training.report_to=[wandb]", "--resume"]
    )
    assert "training.report_to: wandb is not installed; pip install wandb" in message


def test_a_checkpoint_that_cannot_be_written_is_one_error_naming_the_last_good_one(
    unfinished, capsys, monkeypatch
):
    import accelerate

    recipe, out = unfinished

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(accelerate.Accelerator, "save_state", full)
    assert main(["train", str(recipe), "--no-progress", "--resume"]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]  # after the log of the steps it trained
    assert message.startswith("hyperadapt: error: ")
    assert "cannot write checkpoint" in message and "No space left on device" in message
    assert "the last complete one is" in message and "step_000006" in message
