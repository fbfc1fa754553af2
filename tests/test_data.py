"""The task loaders: task folders, csv/json files through `datasets`, dedup and clean splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperadapt.data import (
    Task,
    TaskSpec,
    carve_validation,
    deduplicate,
    example_key,
    load_dataset_task,
    load_task_folder,
    normalise_examples,
)
from hyperadapt.errors import HyperAdaptError
from hyperadapt.recipe import parse_recipe

SPEC = TaskSpec("reviews", "sequence_classification", ["sentence"], labels=["neg", "pos"])


def _inputs(task: Task, split: str) -> set[str]:
    return {example_key(task.spec, ex) for ex in task.splits.get(split, [])}


def _assert_no_input_in_two_splits(task: Task) -> None:
    train, validation, test = (_inputs(task, s) for s in ("train", "validation", "test"))
    assert not train & validation and not train & test and not validation & test


def _write_folder(folder: Path, meta: dict, **splits: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps(meta))
    for split, rows in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


META = {
    "task_id": "mood",
    "task_type": "sequence_classification",
    "text_fields": ["sentence"],
    "labels": ["sad", "happy"],
}


def test_folder_loader_reads_spec_and_normalised_examples(task_dirs):
    task = load_task_folder(task_dirs["single"])
    assert task.name == "single"
    assert task.spec.labels == ["negative", "positive"]
    assert task.sizes() == {"train": 60, "validation": 20, "test": 20}
    example = task.splits["train"][0]
    assert set(example) == {"sentence", "label"} and example["label"] in (0, 1)
    pair = load_task_folder(task_dirs["pair"])
    assert pair.spec.text_fields == ["sentence1", "sentence2"]
    score = load_task_folder(task_dirs["score"])
    assert all(isinstance(ex["label"], float) for ex in score.splits["train"])


def test_folder_labels_may_be_names_or_indices(tmp_path):
    rows = [{"sentence": "so good", "label": "happy"}, {"sentence": "so bad", "label": 0}]
    folder = _write_folder(
        tmp_path / "mood", META, train=rows, validation=[{"sentence": "fine", "label": 1.0}]
    )
    task = load_task_folder(folder)
    assert [ex["label"] for ex in task.splits["train"]] == [1, 0]
    assert task.splits["validation"][0]["label"] == 1  # an integral float is an index


def test_folder_overrides_apply_before_the_examples_are_checked(tmp_path):
    rows = [{"text": "so good", "y": "happy"}, {"text": "so bad", "y": "sad"}]
    folder = _write_folder(tmp_path / "mood", META, train=rows, validation=rows[:1])
    with pytest.raises(HyperAdaptError, match="missing text column 'sentence'"):
        load_task_folder(folder)
    task = load_task_folder(folder, name="mood2", overrides={"text_fields": ["text"], "label_field": "y"})
    assert task.name == "mood2"
    assert task.splits["train"] == [{"text": "so bad", "label": 0}]  # "so good" is in validation


def test_recipe_folder_entry_overrides_the_task_json(tmp_path):
    rows = [{"text": "so good", "y": 1}, {"text": "so bad", "y": 0}, {"text": "meh", "y": 0}]
    folder = _write_folder(tmp_path / "mood", META, train=rows, validation=rows[:1])
    entry = {"folder": str(folder), "name": "renamed", "text_fields": ["text"], "label_field": "y"}
    recipe = parse_recipe({"tasks": [entry]})
    (task,) = recipe.load_tasks()
    assert task.name == "renamed" and task.sizes()["train"] == 2


def test_a_folder_entry_without_validation_may_carve_one(tmp_path):
    rows = [{"sentence": f"text number {i}", "label": i % 2} for i in range(40)]
    folder = _write_folder(tmp_path / "mood", META, train=rows)
    with pytest.raises(HyperAdaptError, match="no validation examples"):
        load_task_folder(folder)
    (task,) = parse_recipe({"tasks": [{"folder": str(folder), "validation_fraction": 0.25}]}).load_tasks()
    assert task.sizes()["train"] + task.sizes()["validation"] == 40
    assert task.sizes()["validation"] > 0
    _assert_no_input_in_two_splits(task)


def test_folder_duplicates_are_dropped_and_no_input_is_in_two_splits(tmp_path):
    train = [
        {"sentence": "same text", "label": 0},
        {"sentence": "same   text ", "label": 0},  # the same input after whitespace normalisation
        {"sentence": "in validation too", "label": 1},
        {"sentence": "in test too", "label": 1},
        {"sentence": "only train", "label": 0},
    ]
    folder = _write_folder(
        tmp_path / "mood",
        META,
        train=train,
        validation=[{"sentence": "in validation too", "label": 1}],
        test=[{"sentence": "in  test too", "label": 1}],
    )
    task = load_task_folder(folder)
    assert [ex["sentence"] for ex in task.splits["train"]] == ["same text", "only train"]
    assert task.sizes() == {"train": 2, "validation": 1, "test": 1}
    _assert_no_input_in_two_splits(task)


def test_a_train_split_made_only_of_evaluation_inputs_is_an_error(tmp_path):
    rows = [{"sentence": "a", "label": 0}]
    folder = _write_folder(tmp_path / "mood", META, train=rows, validation=rows)
    with pytest.raises(HyperAdaptError, match="no training examples"):
        load_task_folder(folder)


def test_deduplicate_keeps_evaluation_splits(task_dirs):
    task = load_task_folder(task_dirs["single"])
    leaked = Task(task.spec, {**task.splits, "train": task.splits["train"] + task.splits["test"][:5]})
    clean = deduplicate(leaked)
    assert clean.sizes() == task.sizes()
    _assert_no_input_in_two_splits(clean)


def _csv(path: Path, n: int = 40, header: str = "review,stars") -> Path:
    lines = [header] + [
        f"review {i} was {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}" for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_with_a_column_mapping_and_label_names(tmp_path):
    train = _csv(tmp_path / "train.csv")
    dev = _csv(tmp_path / "dev.csv", n=6)
    # dev repeats train's first inputs: they stay in validation only.
    task = load_dataset_task(
        SPEC,
        "csv",
        data_files={"train": str(train), "dev": str(dev)},
        columns={"review": "sentence", "stars": "label"},
        split_names={"validation": "dev"},
    )
    assert task.sizes() == {"train": 34, "validation": 6, "test": 0}
    assert {ex["label"] for ex in task.splits["train"]} == {0, 1}
    first = task.splits["validation"][1]
    assert first == {"sentence": "review 1 was good", "label": 1}
    _assert_no_input_in_two_splits(task)


def test_csv_validation_carved_deterministically(tmp_path):
    train = _csv(tmp_path / "train.csv", n=200)
    kwargs = {"columns": {"review": "sentence", "stars": "label"}, "validation_fraction": 0.25}
    task = load_dataset_task(SPEC, "csv", data_files={"train": str(train)}, **kwargs)
    again = load_dataset_task(SPEC, "csv", data_files={"train": str(train)}, **kwargs)
    assert task.splits == again.splits
    assert 25 <= len(task.splits["validation"]) <= 75
    assert len(task.splits["train"]) + len(task.splits["validation"]) == 200
    _assert_no_input_in_two_splits(task)


def test_json_lines_files_with_a_column_mapping(tmp_path):
    rows = [{"t": f"text {i}", "y": i % 2} for i in range(10)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dev.jsonl").write_text(json.dumps({"t": "held out", "y": 1}) + "\n")
    task = load_dataset_task(
        SPEC,
        "json",
        data_files={"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "dev.jsonl")},
        columns={"t": "sentence", "y": "label"},
    )
    assert task.sizes()["train"] == 10
    assert task.splits["validation"] == [{"sentence": "held out", "label": 1}]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"columns": {"text": "sentence", "stars": "label"}}, "columns ['text'] are not in"),
        ({"columns": None}, "missing text column 'sentence'; columns are ['review', 'stars']"),
        ({"data_files": None}, "a csv dataset needs data_files"),
        ({"data_files": {"train": "/nonexistent/train.csv"}}, "found no data"),
        ({"split_names": {"dev": "validation"}}, "split_names key 'dev' must be one of"),
        ({"split_names": {"train": "training"}}, "has no split named 'training'"),
        ({"validation_fraction": None}, "no validation examples"),
    ],
)
def test_csv_problems_are_named(tmp_path, kwargs, words):
    train = _csv(tmp_path / "train.csv")
    args = {
        "data_files": {"train": str(train)},
        "columns": {"review": "sentence", "stars": "label"},
        "validation_fraction": 0.3,
        **kwargs,
    }
    with pytest.raises(HyperAdaptError) as caught:
        load_dataset_task(SPEC, "csv", **args)
    assert words in str(caught.value)


def test_csv_with_an_unknown_label_name_names_the_row(tmp_path):
    train = _csv(tmp_path / "train.csv")
    spec = TaskSpec("reviews", "sequence_classification", ["sentence"], labels=["negative", "positive"])
    with pytest.raises(HyperAdaptError, match=r"train row 0\): label 'neg' is not one of the task's labels"):
        load_dataset_task(
            spec, "csv", data_files={"train": str(train)}, columns={"review": "sentence", "stars": "label"}
        )


@pytest.mark.parametrize(
    "row, words",
    [
        ({"sentence": "a", "label": 2}, "label 2 is out of range"),
        ({"sentence": "a", "label": -1}, "label -1 is out of range"),
        ({"sentence": "a", "label": "maybe"}, "'maybe' is not one of the task's labels"),
        ({"sentence": "a", "label": 0.5}, "must be an integer index or a label name"),
        ({"sentence": "a", "label": None}, "must be an integer index or a label name"),
        ({"sentence": "a", "label": True}, "must be an integer index or a label name"),
        ({"sentence": "", "label": 0}, "column 'sentence' is empty"),
        ({"sentence": 3, "label": 0}, "column 'sentence' holds int"),
        ({"label": 0}, "missing text column 'sentence'"),
        ({"sentence": "a"}, "missing label column 'label'"),
        ([1, 2], "expected an object of columns, got list"),
    ],
)
def test_bad_rows_are_named(row, words):
    with pytest.raises(HyperAdaptError) as caught:
        normalise_examples(SPEC, [row], "train", "test data")
    assert words in str(caught.value) and "train row 0" in str(caught.value)


def test_regression_labels_are_finite_numbers():
    spec = TaskSpec("score", "regression", ["sentence"])
    assert normalise_examples(spec, [{"sentence": "a", "label": "3.5"}], "train", "x")[0]["label"] == 3.5
    for bad in ("high", float("inf"), float("nan")):
        with pytest.raises(HyperAdaptError, match="label"):
            normalise_examples(spec, [{"sentence": "a", "label": bad}], "train", "x")


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"name": "../up"}, "task name '../up'"),
        ({"name": "has space"}, "task name 'has space'"),
        ({"labels": "ab"}, "labels must be a list of distinct label names"),
        ({"labels": ["a", "a"]}, "labels must be a list of distinct label names"),
        ({"labels": [0, 1]}, "labels must be a list of distinct label names"),
        ({"labels": ["a"]}, "at least two labels"),
        ({"text_fields": "sentence"}, "text_fields must be a list"),
        ({"text_fields": []}, "needs one or two field names"),
        ({"task_type": "sentence_pair_classification"}, "needs 2 field names"),
        ({"task_type": "summarisation"}, "is not supported"),
        ({"task_type": "token_classification", "text_fields": ["a", "b"]}, "needs 1 field names"),
        ({"group": "a b"}, "group 'a b' may only hold"),
        ({"label_field": 3}, "label_field must be a column name"),
        ({"description": ["x"]}, "description must be a text"),
        ({"label_descriptions": ["x"]}, "label_descriptions must map label names to texts"),
        ({"task_type": "regression", "labels": [], "label_range": [5, 1]}, "label_range must be [low, high]"),
    ],
)
def test_bad_specs_are_named(fields, words):
    args = {
        "name": "t",
        "task_type": "sequence_classification",
        "text_fields": ["sentence"],
        "labels": ["a", "b"],
    }
    with pytest.raises(ValueError) as caught:
        TaskSpec(**{**args, **fields})
    assert words in str(caught.value)


def test_unicode_task_names_are_allowed():
    assert TaskSpec("情感_v1.2", "sequence_classification", ["s"], labels=["a", "b"]).name == "情感_v1.2"


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda f: (f / "task.json").write_text("{"), "task.json: not valid JSON"),
        (lambda f: (f / "task.json").write_text("[]"), "expected a JSON object"),
        (lambda f: (f / "task.json").write_bytes(b'{"task_id": "\xff"}'), "not UTF-8"),
        (lambda f: (f / "task.json").unlink(), "task.json is missing"),
        (lambda f: (f / "train.jsonl").write_text('{"sentence": "a", "label": 0}\n\n{x\n'), "train.jsonl:3"),
        (
            lambda f: (f / "train.jsonl").write_bytes(b'{"sentence": "\xff", "label": 0}\n'),
            "train.jsonl:1: not UTF-8",
        ),
        (lambda f: (f / "train.jsonl").write_text(""), "no training examples"),
    ],
)
def test_broken_task_folders_are_named(tmp_path, task_dirs, setup, words):
    import shutil

    folder = tmp_path / "t"
    shutil.copytree(task_dirs["single"], folder)
    setup(folder)
    with pytest.raises(HyperAdaptError) as caught:
        load_task_folder(folder)
    assert words in str(caught.value)


def test_missing_task_folders_are_named(tmp_path):
    with pytest.raises(HyperAdaptError, match="does not exist"):
        load_task_folder(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HyperAdaptError, match="is a file"):
        load_task_folder(tmp_path / "file")


def test_carve_validation_is_disjoint_and_rejects_bad_fractions(task_dirs):
    task = load_task_folder(task_dirs["single"])
    carved = carve_validation(Task(task.spec, {"train": task.splits["train"]}), 0.3)
    assert len(carved.splits["train"]) + len(carved.splits["validation"]) == 60
    _assert_no_input_in_two_splits(carved)
    with pytest.raises(HyperAdaptError, match="validation_fraction"):
        carve_validation(task, 1.0)
