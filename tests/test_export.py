"""Exported adapters are plain peft folders: they load in a fresh process and match the hypernetwork."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hyperadapt.errors import HyperAdaptError
from hyperadapt.export import export_adapter
from hyperadapt.runtime import Runtime, load_hypernetwork

SENTENCES = ["test 1 the film was good and great", "test 2 the film was dull and grim"]

# Runs in a fresh interpreter with only transformers and peft imported.
LOAD_WITH_PEFT = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer
base_path, folder, num_labels, sentences = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=num_labels)
model = PeftModel.from_pretrained(base, folder).eval()
tok = AutoTokenizer.from_pretrained(base_path)
with torch.no_grad():
    logits = model(**tok(sentences, return_tensors="pt", padding=True)).logits
assert "hyperadapt" not in sys.modules
print(json.dumps(logits.tolist()))
"""


def assert_peft_matches_hypernetwork(hypernet, task, folder, num_labels: int) -> None:
    """The folder, loaded by plain peft in a fresh process, gives the hypernetwork's logits for ``task`` (a training
    task's name or a `Condition`) to 1e-5."""
    runtime = Runtime(hypernet)
    inputs = dict(runtime.tokenizer(SENTENCES, return_tensors="pt", padding=True))
    with torch.no_grad():
        expected = runtime.adapted(*hypernet(task), **inputs)
    command = [
        sys.executable, "-c", LOAD_WITH_PEFT, hypernet.config.base_model, str(folder), str(num_labels),
        json.dumps(SENTENCES),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""}
    )
    got = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("task, num_labels", [("single", 2), ("score", 1)])
def test_exported_adapter_loads_with_plain_peft_in_a_fresh_process(trained_run, tmp_path, task, num_labels):
    hypernet = load_hypernetwork(trained_run.hypernetwork_dir)
    folder = export_adapter(hypernet, task, tmp_path / task)
    files = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= files
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "SEQ_CLS"
    assert "classifier" in config["modules_to_save"]

    assert_peft_matches_hypernetwork(hypernet, task, folder, num_labels)


def test_training_run_exports_one_adapter_per_task(trained_run):
    assert set(trained_run.adapter_dirs) == {"single", "pair", "score"}
    for name, folder in trained_run.adapter_dirs.items():
        info = json.loads((folder / "hyperadapt_task.json").read_text())
        assert info["task"]["name"] == name
    summary = json.loads((trained_run.output_dir / "metrics.json").read_text())
    assert set(summary["validation"]) == {"single", "pair", "score"}


def test_export_refuses_an_existing_folder_and_writes_nothing(trained_run, tmp_path):
    hypernet = load_hypernetwork(trained_run.hypernetwork_dir)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(HyperAdaptError, match="already exists"):
        export_adapter(hypernet, "single", tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_base_weights_are_bit_identical_after_training(tiny_bert, task_dirs, tmp_path, monkeypatch):
    import hyperadapt.training as training
    from hyperadapt.recipe import parse_recipe

    from .conftest import tiny_recipe

    captured = {}
    original = training.load_base

    def capture(*args, **kwargs):
        model = original(*args, **kwargs)
        captured["model"] = model
        captured["before"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    monkeypatch.setattr(training, "load_base", capture)
    training.train(
        parse_recipe(tiny_recipe(tiny_bert, task_dirs, tmp_path / "out", steps=8)), show_progress=False
    )
    # peft wrapped the adapted linears in place: their own weights now sit under base_layer.
    after = {
        k.replace(".base_layer", ""): v for k, v in captured["model"].state_dict().items() if "lora_" not in k
    }
    before = captured["before"]
    assert after.keys() == before.keys() and len(before) > 20
    for key in before:
        assert torch.equal(after[key], before[key]), key
