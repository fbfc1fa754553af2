"""Adapters for tasks the hypernetwork never saw: from descriptions, label names and examples."""

from __future__ import annotations

import json

import pytest
import torch

from hyperadapt.cli import main
from hyperadapt.errors import HyperAdaptError
from hyperadapt.runtime import Runtime, load_hypernetwork, new_task_spec, parse_labels

from .conftest import tiny_recipe, write_task

NEW_LABELS = "negative: the text speaks badly of it; positive: the text speaks well of it"


def test_generate_from_a_description_writes_a_peft_adapter_that_matches(described_run, tmp_path):
    hypernet_dir = str(described_run.hypernetwork_dir)
    out = tmp_path / "new"
    code = main(
        [
            "generate",
            hypernet_dir,
            "--description",
            "Decide if a product review is happy.",
            "--labels",
            NEW_LABELS,
            "--name",
            "reviews",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    info = json.loads((out / "hyperadapt_task.json").read_text())
    assert info["task"]["labels"] == ["negative", "positive"]
    assert "description" in info["generated_from"]

    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    hypernet = load_hypernetwork(hypernet_dir)
    runtime = Runtime(hypernet)
    spec = new_task_spec("reviews", "Decide if a product review is happy.", NEW_LABELS)
    inputs = dict(runtime.tokenizer(["the film was good", "bad and dull"], return_tensors="pt", padding=True))
    with torch.no_grad():
        expected = runtime.adapted(*hypernet(runtime.condition(spec)), **inputs)
        base = AutoModelForSequenceClassification.from_pretrained(hypernet.config.base_model, num_labels=2)
        got = PeftModel.from_pretrained(base, str(out)).eval()(**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_descriptions_and_examples_change_the_adapter(described_run):
    hypernet = load_hypernetwork(described_run.hypernetwork_dir)
    runtime = Runtime(hypernet)
    spec = new_task_spec("t", "Decide if a review is positive.", NEW_LABELS)
    first = hypernet(runtime.condition(spec))[0]["attention.self.query"][0]
    other = hypernet(runtime.condition(spec, description="Which city is this question about?"))[0]
    examples = [{"sentence": "good film", "label": 1}, {"sentence": "bad film", "label": 0}]
    shots = hypernet(runtime.condition(spec, examples=examples))[0]
    assert not torch.allclose(first, other["attention.self.query"][0])
    assert not torch.allclose(first, shots["attention.self.query"][0])


def test_eval_scores_an_unseen_task_folder_zero_and_few_shot(described_run, tmp_path, capsys):
    folder = write_task(tmp_path / "unseen", "unseen", seed=5)
    hypernet_dir = str(described_run.hypernetwork_dir)
    assert main(["eval", hypernet_dir, "--task", str(folder)]) == 0
    zero = json.loads(capsys.readouterr().out)
    assert zero["mode"] == "zero-shot" and zero["n"] == 20 and 0.0 <= zero["accuracy"] <= 1.0
    assert main(["eval", hypernet_dir, "--task", str(folder), "--shots", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "4-shot"


def test_a_task_head_hypernetwork_refuses_new_tasks(trained_run, tmp_path, capsys):
    code = main(
        [
            "generate",
            str(trained_run.hypernetwork_dir),
            "--description",
            "Is it about sport?",
            "--labels",
            "yes: about sport; no: about anything else",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "label_semantic" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "labels, message",
    [
        ("positive: good", "at least two labels"),
        ("a: x; a: y", "given twice"),
        (": nameless; b: y", "no label name"),
    ],
)
def test_bad_label_lists_are_clear_errors(labels, message):
    with pytest.raises(HyperAdaptError, match=message):
        parse_labels(labels)


def test_an_empty_description_is_a_clear_error(described_run, tmp_path, capsys):
    code = main(
        [
            "generate",
            str(described_run.hypernetwork_dir),
            "--description",
            "  ",
            "--labels",
            NEW_LABELS,
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2
    assert "description is empty" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_held_out_tasks_are_scored_zero_shot_during_training(tiny_bert, task_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = tiny_recipe(
        tiny_bert, {"single": task_dirs["single"], "pair": task_dirs["pair"]}, tmp_path / "o", steps=4
    )
    data["hypernetwork"].update(conditioning=["description"], head="label_semantic", text_encoder=tiny_bert)
    data["held_out"] = [{"folder": str(write_task(tmp_path / "held", "held", seed=9))}]
    result = train(parse_recipe(data), show_progress=False)
    assert result.metrics["held"]["zero_shot"] is True
    assert "held" not in result.adapter_dirs
    summary = json.loads((result.output_dir / "metrics.json").read_text())
    assert summary["validation"]["held"]["n"] == 20


def test_held_out_needs_a_label_semantic_head(tiny_bert, task_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe

    data = tiny_recipe(tiny_bert, task_dirs, tmp_path / "o")
    data["held_out"] = [{"folder": task_dirs["single"]}]
    with pytest.raises(HyperAdaptError, match="label_semantic"):
        parse_recipe(data)


def test_eval_takes_a_dataset_spec_the_hypernetwork_never_saw(described_run, tmp_path, capsys):
    rows = ["text,stars"] + [
        f"review {i} was {'good and great' if i % 2 else 'bad and dull'},{i % 2}" for i in range(30)
    ]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    entry = tmp_path / "reviews.yaml"
    entry.write_text(
        "name: csv_reviews\ndataset: csv\ndata_files: {train: reviews.csv}\nvalidation_fraction: 0.3\n"
        "columns: {text: sentence, stars: label}\ntask_type: sequence_classification\n"
        "text_fields: [sentence]\nlabels: [negative, positive]\ndescription: Is the review positive?\n"
    )
    assert main(["eval", str(described_run.hypernetwork_dir), "--task", str(entry)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "csv_reviews" and printed["mode"] == "zero-shot" and printed["n"] > 0


def test_few_shot_examples_may_give_labels_by_name_or_index(described_run):
    hypernet = load_hypernetwork(described_run.hypernetwork_dir)
    runtime = Runtime(hypernet)
    spec = new_task_spec("t", "Decide if a review is positive.", NEW_LABELS)
    by_name = [{"sentence": "good film", "label": "positive"}, {"sentence": "bad film", "label": "negative"}]
    by_index = [{"sentence": "good film", "label": 1}, {"sentence": "bad film", "label": 0}]
    a = hypernet(runtime.condition(spec, examples=by_name))[0]["attention.self.query"][0]
    b = hypernet(runtime.condition(spec, examples=by_index))[0]["attention.self.query"][0]
    assert torch.equal(a, b)
    with pytest.raises(HyperAdaptError, match="not one of the task's labels"):
        runtime.condition(spec, examples=[{"sentence": "x", "label": "neutral"}])


def test_generate_takes_an_unseen_task_folder_like_eval(described_run, tmp_path, capsys):
    folder = write_task(tmp_path / "unseen", "unseen", seed=5)
    hypernet_dir = str(described_run.hypernetwork_dir)
    out = tmp_path / "adapter"
    assert main(["generate", hypernet_dir, "--task", str(folder), "--out", str(out)]) == 0
    info = json.loads((out / "hyperadapt_task.json").read_text())
    assert info["task"]["name"] == "unseen"
    # Scoring the folder through the exported adapter gives what the hypernetwork gives zero-shot.
    capsys.readouterr()
    assert main(["eval", str(out), "--task", str(folder)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert main(["eval", hypernet_dir, "--task", str(folder)]) == 0
    zero_shot = json.loads(capsys.readouterr().out)
    assert exported["task"] == zero_shot["task"] == "unseen"
    assert exported["accuracy"] == zero_shot["accuracy"]


def test_generate_with_an_unknown_name_says_how_to_describe_a_new_task(described_run, tmp_path, capsys):
    argv = ["generate", str(described_run.hypernetwork_dir), "--task", "singel", "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown task 'singel'" in err and "--description" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_the_exported_adapter_is_scored_under_the_data_s_task_name(described_run, tmp_path, capsys):
    out = tmp_path / "new"
    hypernet_dir = str(described_run.hypernetwork_dir)
    generate = ["generate", hypernet_dir, "--description", "Is it good?", "--labels", NEW_LABELS]
    assert main([*generate, "--name", "reviews", "--out", str(out)]) == 0
    folder = write_task(tmp_path / "scored", "scored", seed=3)
    capsys.readouterr()
    assert main(["eval", str(out), "--task", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "scored"


def test_a_task_entry_file_needs_only_the_split_it_scores(described_run, tmp_path, capsys):
    folder = write_task(tmp_path / "only_test", "only_test", seed=4)
    for split in ("train", "validation"):
        (folder / f"{split}.jsonl").unlink()
    entry = tmp_path / "entry.yaml"
    entry.write_text(f"folder: {folder}\n")
    hypernet_dir = str(described_run.hypernetwork_dir)
    assert main(["eval", hypernet_dir, "--task", str(entry), "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "zero-shot"
    assert main(["eval", hypernet_dir, "--task", str(entry), "--split", "test", "--shots", "2"]) == 2
    assert "no training examples" in capsys.readouterr().err


def test_generate_names_what_is_wrong_with_a_broken_task_folder(described_run, tmp_path, capsys):
    folder = write_task(tmp_path / "broken", "broken", seed=5)
    (folder / "task.json").write_text("{oops")
    argv = [
        "generate",
        str(described_run.hypernetwork_dir),
        "--task",
        str(folder),
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "task.json" in err and "not valid JSON" in err and "unknown task" not in err
    assert not (tmp_path / "x").exists()
