"""The real packaged MiniLM and real built-in data, through the command line (marked slow)."""

from __future__ import annotations

import json

import pytest

from hyperadapt.cli import main

pytestmark = pytest.mark.slow


def test_quickstart_recipe_trains_generates_and_evaluates_on_minilm(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "recipes/quickstart.yaml",
            "--output-dir",
            str(out),
            "--max-steps",
            "30",
            "--no-progress",
            "training.eval_every=0",
            "training.max_eval_examples=64",
            "training.batch_size=8",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for task in ("rt_sentiment", "rt_subjectivity", "trec_coarse"):
        assert task in printed
        assert (out / "adapters" / task / "adapter_model.safetensors").is_file()
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["best_step"] == 30
    assert set(summary["validation"]["trec_coarse"]) >= {"accuracy", "macro_f1", "matthews_correlation"}

    assert (
        main(["generate", str(out / "hypernetwork"), "--task", "trec_coarse", "--out", str(tmp_path / "a")])
        == 0
    )
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "a"), "--task", "trec_coarse", "--max-examples", "64"]) == 0
    from_adapter = json.loads(capsys.readouterr().out)
    assert main(["eval", str(out / "hypernetwork"), "--task", "trec_coarse", "--max-examples", "64"]) == 0
    from_hypernet = json.loads(capsys.readouterr().out)
    assert from_adapter["n"] == from_hypernet["n"] == 64
    assert from_adapter["accuracy"] == from_hypernet["accuracy"]
