"""Bad input to zero-shot generation and scoring: one error line, exit status 2, nothing written.

Each case gets the session's hypernetwork conditioned on names, descriptions and examples (with a
label-semantic head) and returns the command line and the words its error must contain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperadapt.cli import main
from hyperadapt.errors import HyperAdaptError

from .conftest import write_task

LABELS = "negative: the text speaks badly of it; positive: the text speaks well of it"


def _new(hn: str, tmp: Path, *extra: str) -> list[str]:
    return [
        "generate",
        hn,
        "--description",
        "Is the review happy?",
        "--labels",
        LABELS,
        *extra,
        "--out",
        str(tmp / "a"),
    ]


def _small_task(tmp: Path, n: int) -> str:
    folder = write_task(tmp / "small", "small", n=n, seed=3)
    return str(folder)


CASES = [
    ("empty description", lambda hn, t: ["generate", hn, "--description", "", "--labels", LABELS, "--out", str(t / "a")], ["--description is empty"]),
    ("empty description of a known task", lambda hn, t: ["generate", hn, "--task", "single", "--description", "", "--out", str(t / "a")], ["description is empty"]),
    ("new task named like a training task", lambda hn, t: _new(hn, t, "--name", "single"), ["--name 'single' is a training task"]),
    ("empty --name", lambda hn, t: _new(hn, t, "--name", ""), ["--name", "must not be empty"]),
    ("empty --text-fields", lambda hn, t: _new(hn, t, "--text-fields", ""), ["--text-fields", "must not be empty"]),
    ("empty --push-to-hub", lambda hn, t: _new(hn, t, "--push-to-hub", ""), ["--push-to-hub", "must not be empty"]),
    ("empty --revision", lambda hn, t: _new(hn, t, "--revision", ""), ["--revision", "must not be empty"]),
    ("eval empty description", lambda hn, t: ["eval", hn, "--task", _small_task(t, 30), "--description", ""], ["description is empty"]),
    ("eval shots over the train split", lambda hn, t: ["eval", hn, "--task", _small_task(t, 9), "--shots", "16"], ["--shots 16", "9 training examples", "--shots 9 or fewer"]),
    ("eval negative seed", lambda hn, t: ["eval", hn, "--task", "single", "--shots", "2", "--seed", "-1"], ["--seed", "0 or more"]),
]  # fmt: skip


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("make_argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_zero_shot_input_gives_one_error_line_and_writes_nothing(
    make_argv, words, described_run, tmp_path, capsys
):
    argv = make_argv(str(described_run.hypernetwork_dir), tmp_path)
    before = _snapshot(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("hyperadapt: error:")]
    assert code == 2, captured.err
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    for word in words:
        assert word in errors[0], errors[0]
    assert _snapshot(tmp_path) == before


def test_a_failed_push_leaves_no_adapter_folder(described_run, tmp_path, monkeypatch, capsys):
    """--push-to-hub pushes from the temporary folder; --out appears only once the push worked."""
    import hyperadapt.hub as hub

    def refuse(folder, repo_id, **kwargs):
        assert (Path(folder) / "adapter_model.safetensors").is_file()
        raise HyperAdaptError("the Hub refused to push (simulated)")

    monkeypatch.setattr(hub, "check_push_target", lambda repo_id: None)
    monkeypatch.setattr(hub, "push_adapter", refuse)
    code = main(_new(str(described_run.hypernetwork_dir), tmp_path, "--push-to-hub", "me/adapter"))
    assert code == 2 and "simulated" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(hub, "push_adapter", lambda folder, repo_id, **kw: "https://hub/me/adapter/commit/1")
    assert main(_new(str(described_run.hypernetwork_dir), tmp_path, "--push-to-hub", "me/adapter")) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "a"), "https://hub/me/adapter/commit/1"]
    assert json.loads((tmp_path / "a" / "hyperadapt_task.json").read_text())["task"]["name"] == "new_task"
    assert [p.name for p in tmp_path.iterdir()] == ["a"]
