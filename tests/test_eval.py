"""Scoring: task data whose folder words the same task differently still scores correctly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperadapt.cli import main
from hyperadapt.data import align_task, load_task_folder
from hyperadapt.errors import HyperAdaptError


def _reword(src: str, dst: Path, labels: list[str], field: str = "text") -> Path:
    """The same examples with the label order reversed and the text field renamed."""
    dst.mkdir(parents=True)
    meta = json.loads((Path(src) / "task.json").read_text())
    old_labels = meta["labels"]
    meta.update(labels=labels, text_fields=[field])
    (dst / "task.json").write_text(json.dumps(meta))
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (Path(src) / f"{split}.jsonl").read_text().splitlines()]
        same = sorted(labels) == sorted(old_labels)
        out = [
            {field: r["sentence"], "label": labels.index(old_labels[r["label"]]) if same else r["label"]}
            for r in rows
        ]
        (dst / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    return dst


def test_label_order_and_field_names_are_aligned_to_the_model(trained_run, task_dirs, tmp_path, capsys):
    hypernet = str(trained_run.hypernetwork_dir)
    reworded = _reword(task_dirs["single"], tmp_path / "single", ["positive", "negative"])
    assert main(["eval", hypernet, "--task", task_dirs["single"]]) == 0
    original = json.loads(capsys.readouterr().out)
    assert main(["eval", hypernet, "--task", str(reworded)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == original["accuracy"]
    adapter = str(trained_run.adapter_dirs["single"])
    assert main(["eval", adapter, "--task", str(reworded)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == original["accuracy"]


def test_other_label_names_are_refused_not_scored(task_dirs, tmp_path):
    reworded = load_task_folder(_reword(task_dirs["single"], tmp_path / "single", ["rotten", "fresh"]))
    original = load_task_folder(task_dirs["single"])
    with pytest.raises(
        HyperAdaptError, match=r"labels \['rotten', 'fresh'\] are not the labels of the model's task 'single'"
    ):
        align_task(reworded, original.spec)


def test_a_missing_task_folder_is_named(trained_run, capsys):
    assert main(["eval", str(trained_run.hypernetwork_dir), "--task", "../nowhere/glue_sst2"]) == 2
    assert "no such task folder" in capsys.readouterr().err


def test_majority_baseline_counts_the_examples_that_are_scored():
    from hyperadapt.data import Task, TaskSpec

    spec = TaskSpec("t", "sequence_classification", ["sentence"], labels=["a", "b"])
    train = [{"sentence": f"t{i}", "label": 0} for i in range(3)] + [{"sentence": "u", "label": 1}]
    validation = [{"sentence": f"v{i}", "label": 1} for i in range(2)] + [
        {"sentence": f"w{i}", "label": 0} for i in range(6)
    ]
    task = Task(spec, {"train": train, "validation": validation})
    assert task.majority_baseline() == 6 / 8
    assert task.majority_baseline(max_examples=4) == 2 / 4
