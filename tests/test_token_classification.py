"""Token classification (named entities with BIO tags): data, sub-word alignment, entity F1,
training beside sentence tasks, and export to a peft folder for AutoModelForTokenClassification."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hyperadapt.cli import main
from hyperadapt.data import load_task_folder
from hyperadapt.errors import HyperAdaptError
from hyperadapt.evaluation import IGNORE, encode_batch
from hyperadapt.export import export_adapter
from hyperadapt.metrics import compute_metrics, metric_path
from hyperadapt.runtime import Runtime, load_hypernetwork

from .conftest import NER_TAGS, tiny_recipe, write_task

WORDS = [["Ada", "Lovelace", "visited", "Janeiro"], ["Paris"]]

# Runs in a fresh interpreter with only transformers and peft imported.
LOAD_TOKEN_ADAPTER = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForTokenClassification, AutoTokenizer
base_path, folder, num_labels, words = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
base = AutoModelForTokenClassification.from_pretrained(base_path, num_labels=num_labels)
model = PeftModel.from_pretrained(base, folder).eval()
tok = AutoTokenizer.from_pretrained(base_path)
with torch.no_grad():
    logits = model(**tok(words, is_split_into_words=True, return_tensors="pt", padding=True)).logits
assert "hyperadapt" not in sys.modules
print(json.dumps(logits.tolist()))
"""


@pytest.fixture(scope="module")
def ner_run(tiny_bert, task_dirs, tmp_path_factory):
    """A hypernetwork trained on a sentence task and a named-entity task at once."""
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    root = tmp_path_factory.mktemp("ner")
    ner = write_task(root / "ner", "ner", "token_classification", n=60)
    data = tiny_recipe(tiny_bert, {"single": task_dirs["single"], "ner": str(ner)}, root / "out", steps=6)
    return train(parse_recipe(data), show_progress=False), ner


def test_a_token_task_folder_loads_words_and_tag_indices(tmp_path):
    task = load_task_folder(write_task(tmp_path / "ner", "ner", "token_classification", n=9))
    example = task.splits["train"][0]
    assert isinstance(example["tokens"], list) and "lived" in example["tokens"]
    assert example["label"][example["tokens"].index("lived")] == NER_TAGS.index("O")
    assert all(isinstance(t, int) and 0 <= t < len(NER_TAGS) for t in example["label"])
    assert len(example["label"]) == len(example["tokens"])
    assert task.spec.main_metric == "f1" and task.majority_baseline("test") is None


@pytest.mark.parametrize(
    "row, words",
    [
        ({"tokens": ["Ada", "Lovelace"], "tags": ["B-PER"]}, ["one tag per word", "2 words"]),
        ({"tokens": "Ada Lovelace", "tags": ["B-PER", "I-PER"]}, ["must be a non-empty list of words"]),
        ({"tokens": [], "tags": []}, ["must be a non-empty list of words"]),
        ({"tokens": ["Ada"], "tags": ["B-XYZ"]}, ["'B-XYZ' is not one of the task's labels"]),
    ],
)
def test_bad_token_rows_name_the_row_and_the_fix(tmp_path, row, words):
    folder = write_task(tmp_path / "ner", "ner", "token_classification", n=9)
    with (folder / "train.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    with pytest.raises(HyperAdaptError) as err:
        load_task_folder(folder)
    assert "train row 9" in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_each_word_labels_its_first_sub_word_only(tiny_bert):
    from hyperadapt.base_model import load_tokenizer

    tokenizer = load_tokenizer(tiny_bert)
    task_spec = _spec()
    examples = [{"tokens": ["Lovelace", "unbelievably", "x"], "label": [1, 2, 0]}]
    inputs, labels = encode_batch(tokenizer, task_spec, examples, 32)
    word_ids = tokenizer(examples[0]["tokens"], is_split_into_words=True).word_ids()
    assert len(word_ids) > 5  # the words split into several pieces, plus [CLS] and [SEP]
    firsts = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
    assert labels[0, firsts].tolist() == [1, 2, 0]
    others = [i for i in range(len(word_ids)) if i not in firsts]
    assert (labels[0, others] == IGNORE).all()
    assert inputs["input_ids"].shape == labels.shape


def _spec():
    from hyperadapt.data import TaskSpec

    return TaskSpec("ner", "token_classification", ["tokens"], "tags", NER_TAGS)


def test_entity_f1_scores_spans_as_seqeval_does():
    import evaluate

    metric = evaluate.load(str(metric_path("f1")))
    got = metric.compute(
        predictions=[["B-PER", "I-PER", "O", "O"], ["I-LOC", "I-LOC", "B-LOC"]],
        references=[["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "B-LOC"]],
    )
    # Spans predicted: PER 0-2; LOC 0-2 (a leading I- opens a span), LOC 2-3. Reference: PER 0-2,
    # LOC 3-4; LOC 0-2, LOC 2-3. Three of three predicted are right; three of four found.
    assert got["precision"] == pytest.approx(1.0)
    assert got["recall"] == pytest.approx(0.75)
    assert got["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert got["token_accuracy"] == pytest.approx(5 / 7)
    # A span with a wrong end or type does not count.
    assert compute_metrics("token_classification", [[1, 2, 2]], [[1, 2, 0]], NER_TAGS)["f1"] == 0.0
    assert compute_metrics("token_classification", [[3, 4]], [[1, 2]], NER_TAGS)["f1"] == 0.0


def test_one_hypernetwork_trains_sentence_and_token_tasks(ner_run):
    result, _ = ner_run
    summary = json.loads((result.output_dir / "metrics.json").read_text())
    assert set(summary["validation"]["ner"]) >= {"f1", "precision", "recall", "token_accuracy"}
    assert "accuracy" in summary["validation"]["single"]
    hypernet = load_hypernetwork(result.hypernetwork_dir)
    assert set(hypernet.head.heads["ner"]) == {"weight", "bias"}
    assert hypernet.head.heads["ner"]["weight"].shape[0] == len(NER_TAGS)


def test_an_exported_token_adapter_loads_with_plain_peft_in_a_fresh_process(ner_run, tmp_path):
    result, _ = ner_run
    hypernet = load_hypernetwork(result.hypernetwork_dir)
    folder = export_adapter(hypernet, "ner", tmp_path / "ner")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["task_type"] == "TOKEN_CLS" and "classifier" in config["modules_to_save"]
    assert "AutoModelForTokenClassification" in (folder / "README.md").read_text()

    runtime = Runtime(hypernet)
    inputs = dict(runtime.tokenizer(WORDS, is_split_into_words=True, return_tensors="pt", padding=True))
    with torch.no_grad():
        expected = runtime.adapted(*hypernet("ner"), per_token=True, **inputs)
    command = [
        sys.executable, "-c", LOAD_TOKEN_ADAPTER, hypernet.config.base_model, str(folder), str(len(NER_TAGS)),
        json.dumps(WORDS),
    ]  # fmt: skip
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""}
    )
    got = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    assert got.shape == expected.shape == (2, inputs["input_ids"].shape[1], len(NER_TAGS))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_eval_scores_the_exported_token_adapter_as_the_hypernetwork(ner_run, tmp_path, capsys):
    result, ner = ner_run
    hypernet_dir = str(result.hypernetwork_dir)
    assert main(["eval", hypernet_dir, "--task", str(ner), "--split", "test"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert main(["generate", hypernet_dir, "--task", "ner", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "a"), "--task", str(ner), "--split", "test"]) == 0
    exported = json.loads(capsys.readouterr().out)
    for name in ("f1", "precision", "recall", "token_accuracy", "n"):
        assert exported[name] == pytest.approx(direct[name], abs=1e-9)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"head": "label_semantic"}, ["head per task", "hypernetwork.head: task"]),
        ({"adapter": "bottleneck"}, ["adapter lora, ia3 or none"]),
    ],
)
def test_unsupported_settings_with_token_tasks_are_refused(tiny_bert, tmp_path, changes, words):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    ner = write_task(tmp_path / "ner", "ner", "token_classification", n=12)
    data = tiny_recipe(tiny_bert, {"ner": str(ner)}, tmp_path / "out", steps=2)
    data["hypernetwork"].update(changes)
    if changes.get("head") == "label_semantic":
        data["hypernetwork"].update(text_encoder=tiny_bert)
    if changes.get("adapter") == "bottleneck":
        del data["hypernetwork"]["lora_rank"]
    with pytest.raises(HyperAdaptError) as err:
        train(parse_recipe(data), show_progress=False)
    for word in words:
        assert word in str(err.value)
    assert not Path(tmp_path / "out").exists()


# Named entities in French, written here: a pair outside the training data (and outside ../shared/data),
# with the tags in another order and only those it uses (no places).
FRENCH = [
    (["Marie", "Curie", "habitait", "rue", "Cuvier"], ["B-PER", "I-PER", "O", "O", "O"]),
    (["Hier", ",", "Jean", "Moulin", "est", "venu"], ["O", "O", "B-PER", "I-PER", "O", "O"]),
    (["Simone", "Veil", "a", "parlé", "longtemps"], ["B-PER", "I-PER", "O", "O", "O"]),
    (["Le", "chat", "dort", "sur", "la", "table"], ["O", "O", "O", "O", "O", "O"]),
]


def _french_ner(folder: Path, tags: list[str]) -> Path:
    folder.mkdir(parents=True)
    meta = {"task_id": "ner_fr_maison", "task_type": "token_classification", "language": "fr",
            "text_fields": ["tokens"], "label_field": "tags", "labels": tags}  # fmt: skip
    (folder / "task.json").write_text(json.dumps(meta))
    rows = "".join(json.dumps({"tokens": words, "tags": tags}) + "\n" for words, tags in FRENCH)
    (folder / "test.jsonl").write_text(rows)  # scoring needs only the split it scores
    return folder


@pytest.fixture(scope="module")
def ner_language_run(tiny_bert, tmp_path_factory):
    """Named entities in English and sentiment in French: French named entities never trained on."""
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    root = tmp_path_factory.mktemp("ner_languages")
    data = tiny_recipe(tiny_bert, {}, root / "out", steps=6)
    data["hypernetwork"]["conditioning"] = ["name", "language"]
    ner = write_task(root / "ner_en", "ner_en", "token_classification", n=30)
    sentiment = write_task(root / "sentiment_fr", "sentiment_fr", n=30)
    data["tasks"] = [
        {"folder": str(ner), "group": "ner", "language": "en"},
        {"folder": str(sentiment), "group": "sentiment", "language": "fr"},
    ]
    return train(parse_recipe(data), show_progress=False)


def test_a_new_language_pair_outside_the_data_scores_like_its_exported_adapter(
    ner_language_run, tmp_path, capsys
):
    hypernet_dir = str(ner_language_run.hypernetwork_dir)
    folder = str(_french_ner(tmp_path / "ner_fr", ["I-PER", "O", "B-PER"]))
    assert main(["eval", hypernet_dir, "--task", folder, "--group", "ner", "--split", "test"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["mode"] == "task ner in fr"  # the folder's own language
    assert scored["n"] == len(FRENCH)
    out = tmp_path / "ner_fr_adapter"
    assert main(["generate", hypernet_dir, "--task", "ner", "--language", "fr", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--task", folder, "--split", "test"]) == 0
    exported = json.loads(capsys.readouterr().out)
    for name in ("f1", "precision", "recall", "token_accuracy", "n"):
        assert exported[name] == pytest.approx(scored[name], abs=1e-9)
    # --language overrides the folder's own; a split the folder lacks is named.
    assert (
        main(
            ["eval", hypernet_dir, "--task", folder, "--group", "ner", "--language", "en", "--split", "test"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["mode"] == "task ner in en"
    assert main(["eval", hypernet_dir, "--task", folder, "--split", "test"]) == 2  # no --group
    assert "score it as its group (--group, one of ner, sentiment)" in capsys.readouterr().err
    assert main(["eval", hypernet_dir, "--task", folder, "--group", "ner"]) == 2
    assert (
        "has no 'validation' examples; check the path or split names (it has test)" in capsys.readouterr().err
    )


def test_tags_the_model_does_not_know_are_refused_by_name(ner_language_run, tmp_path, capsys):
    folder = str(_french_ner(tmp_path / "ner_fr", ["O", "B-PER", "I-PER", "B-MISC"]))
    hypernet_dir = str(ner_language_run.hypernetwork_dir)
    assert main(["eval", hypernet_dir, "--task", folder, "--group", "ner", "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "['B-MISC']" in err and "tag those words O" in err and "Traceback" not in err


def test_train_summarises_token_and_held_out_pairs_by_their_own_metric(tiny_bert, tmp_path, capsys):
    import yaml

    data = tiny_recipe(tiny_bert, {}, tmp_path / "out", steps=2)
    data["hypernetwork"]["conditioning"] = ["name", "language"]
    ner = write_task(tmp_path / "ner_en", "ner_en", "token_classification", n=12)
    sentiment = write_task(tmp_path / "sentiment_fr", "sentiment_fr", n=12)
    held = _french_ner(tmp_path / "ner_fr", NER_TAGS)
    for split, lead in (("train", "Alors"), ("validation", "Puis")):
        rows = [{"tokens": [lead, *words], "tags": ["O", *tags]} for words, tags in FRENCH]
        (held / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data["tasks"] = [
        {"folder": str(ner), "group": "ner", "language": "en"},
        {"folder": str(sentiment), "group": "sentiment", "language": "fr"},
    ]
    data["held_out"] = [{"folder": str(held), "group": "ner"}]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    assert main(["train", str(recipe), "--no-progress"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows["ner_en"][1] == "f1" and rows["sentiment_fr"][1] == "accuracy"
    assert rows["ner_fr_maison"][1:3] == ["(held", "out)"] and rows["ner_fr_maison"][3] == "f1"


def test_the_cards_snippet_runs_as_written_and_names_the_tags(ner_run, tmp_path):
    result, _ = ner_run
    hypernet = load_hypernetwork(result.hypernetwork_dir)
    folder = export_adapter(hypernet, "ner", tmp_path / "ner")
    card = (folder / "README.md").read_text()
    snippet = (
        card.split("```python\n", 1)[1]
        .split("```", 1)[0]
        .replace("PATH_OR_REPO_OF_THIS_ADAPTER", str(folder))
    )
    snippet += "print(model.config.id2label[1], tuple(logits.shape))\n"
    out = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": ""}, cwd=tmp_path,
    )  # fmt: skip
    assert out.stdout.split()[0] == NER_TAGS[1]
    assert f", {len(NER_TAGS)})" in out.stdout
