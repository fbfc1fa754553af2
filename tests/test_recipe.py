"""The recipe parser: every key checked, typos named with the closest key, types checked, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hyperadapt.errors import HyperAdaptError
from hyperadapt.recipe import TrainingConfig, apply_overrides, load_recipe, parse_recipe

from .conftest import with_changes


def _data(**changes) -> dict:
    data = {
        "seed": 0,
        "output_dir": "runs/x",
        "hypernetwork": {"base_model": "minilm", "lora_rank": 4},
        "training": {"max_steps": 10, "batch_size": 4},
        "tasks": [{"builtin": "rt_sentiment"}],
    }
    return with_changes(data, changes)


def test_a_valid_recipe_parses_with_defaults():
    recipe = parse_recipe(_data())
    assert recipe.training.max_steps == 10
    assert recipe.training.learning_rate == TrainingConfig().learning_rate
    assert recipe.hypernetwork.lora_rank == 4
    assert recipe.tasks[0].builtin == "rt_sentiment"
    assert recipe.export_adapters is True


def test_a_task_may_be_given_by_its_builtin_name_alone():
    assert parse_recipe(_data(tasks=["trec_coarse"])).tasks[0].builtin == "trec_coarse"


@pytest.mark.parametrize(
    "changes, typo, suggestion",
    [
        ({"seeds": 1}, "'seeds'", "'seed'"),
        ({"outptu_dir": "x"}, "'outptu_dir'", "'output_dir'"),
        ({"training__max_step": 3}, "'training.max_step'", "'max_steps'"),
        ({"training__learning_rte": 0.1}, "'training.learning_rte'", "'learning_rate'"),
        ({"hypernetwork__lora_rnak": 4}, "'hypernetwork.lora_rnak'", "'lora_rank'"),
        ({"hypernetwork__base_modle": "x"}, "'hypernetwork.base_modle'", "'base_model'"),
        ({"tasks": [{"foldr": "x"}]}, "'tasks[0].foldr'", "'folder'"),
        ({"tasks": [{"builtin": "x", "text_field": ["a"]}]}, "'tasks[0].text_field'", "'text_fields'"),
    ],
)
def test_a_typo_names_the_key_and_the_closest_known_key(changes, typo, suggestion):
    with pytest.raises(HyperAdaptError) as caught:
        parse_recipe(_data(**changes))
    message = str(caught.value)
    assert typo in message and f"did you mean {suggestion}?" in message


def test_a_key_with_no_close_match_lists_the_known_keys():
    with pytest.raises(HyperAdaptError, match="known keys: seed, output_dir"):
        parse_recipe(_data(zzz=1))


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"training__max_steps": "many"}, "training.max_steps must be an integer, got 'many'"),
        ({"training__max_steps": 2.5}, "training.max_steps must be an integer"),
        ({"training__max_steps": True}, "training.max_steps must be an integer"),
        ({"training__learning_rate": "fast"}, "training.learning_rate must be a number, got 'fast'"),
        ({"training__warmup_ratio": "abc"}, "training.warmup_ratio must be a number"),
        ({"training__mixed_precision": 16}, "training.mixed_precision must be a text"),
        ({"hypernetwork__dropout": "x"}, "hypernetwork.dropout must be a number"),
        ({"hypernetwork__lora_alpha": True}, "hypernetwork.lora_alpha must be a number"),
        ({"hypernetwork__target_modules": "query"}, "target_modules must be a list of texts or null"),
        ({"hypernetwork__base_model": 5}, "hypernetwork.base_model must be a text"),
        ({"seed": "abc"}, "seed must be an integer"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"output_dir": None}, "output_dir must be a text, got None"),
        ({"export_adapters": "no"}, "export_adapters must be true or false"),
        ({"tasks": [{"builtin": "x", "max_train": "5"}]}, "tasks[0].max_train must be an integer or null"),
        (
            {"tasks": [{"builtin": "x", "validation_fraction": "a"}]},
            "tasks[0].validation_fraction must be a number",
        ),
        (
            {"tasks": [{"builtin": "x", "columns": ["a"]}]},
            "tasks[0].columns must be a mapping of texts to texts",
        ),
        ({"tasks": [{"builtin": "x", "labels": "ab"}]}, "tasks[0].labels must be a list of texts"),
        ({"tasks": [{"builtin": "x", "labels": [False, True]}]}, "quote the value"),
        ({"tasks": [{"builtin": "x", "name": 5}]}, "tasks[0].name must be a text"),
    ],
)
def test_a_wrong_type_names_the_key_and_the_type_it_needs(changes, words):
    with pytest.raises(HyperAdaptError) as caught:
        parse_recipe(_data(**changes))
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"training__max_steps": 0}, "training.max_steps must be a positive integer"),
        ({"training__warmup_ratio": 1.5}, "training.warmup_ratio must be in [0, 1)"),
        ({"training__mixed_precision": "fp8"}, "training.mixed_precision must be 'no', 'bf16' or 'fp16'"),
        ({"training__lr_scheduler": "cosin"}, "did you mean 'cosine'?"),
        ({"training__lr_scheduler": "reduce_lr_on_plateau"}, "is not supported; use one of linear"),
        ({"hypernetwork__lora_rank": 0}, "lora_rank must be a positive integer"),
        (
            {"hypernetwork": {"adapter": "ia3", "lora_rank": 4}},
            "hypernetwork.lora_rank applies to adapter: lora or none, but this recipe has adapter: ia3",
        ),
        (
            {"hypernetwork": {"adapter": "lora", "bottleneck_size": 4}},
            "hypernetwork.bottleneck_size applies to adapter: bottleneck",
        ),
        ({"hypernetwork": {"chunk_embedding_dim": 4}}, "set generator_chunk_size too"),
        ({"hypernetwork": {"adapter": "none", "generator_chunk_size": 8}}, "adapter: none has none"),
        (
            {
                "hypernetwork": {
                    "adapter": "bottleneck",
                    "bottleneck_placement": "pfeiffer",
                    "target_modules": ["query"],
                }
            },
            "give one of them, not both",
        ),
        (
            {"hypernetwork": {"adapter": "bottleneck", "bottleneck_placement": "houlsbi"}},
            "'houlsby', 'pfeiffer'",
        ),
        ({"hypernetwork": [1]}, "hypernetwork must be a mapping"),
        ({"training": "fast"}, "training must be a mapping"),
        ({"tasks": []}, "tasks must be a non-empty list"),
        ({"tasks": "rt_sentiment"}, "tasks must be a non-empty list"),
        ({"tasks": [5]}, "tasks[0] must be a mapping or a built-in task name"),
        ({"tasks": [{"builtin": "a", "folder": "b"}]}, "exactly one of builtin, folder, dataset"),
        ({"tasks": [{"name": "a"}]}, "exactly one of builtin, folder, dataset; got none"),
        ({"tasks": [{"dataset": "csv"}]}, "needs a name"),
        (
            {"tasks": [{"folder": "x", "validation_fraction": 1.5}]},
            "validation_fraction must be between 0 and 1",
        ),
        ({"tasks": [{"folder": "x", "columns": {"a": "b"}}]}, "columns does not apply to a folder entry"),
        (
            {"tasks": [{"builtin": "x", "data_files": "a.csv"}]},
            "data_files does not apply to a builtin entry",
        ),
        ({"tasks": [{"builtin": "x", "validation_fraction": 0.1}]}, "validation_fraction does not apply"),
        ({"tasks": [{"builtin": "x", "max_train": 0}]}, "max_train must be a positive integer"),
    ],
)
def test_a_bad_value_is_named(changes, words):
    with pytest.raises(HyperAdaptError) as caught:
        parse_recipe(_data(**changes))
    assert words in str(caught.value)


def test_floats_that_yaml_reads_as_text_are_numbers(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string.
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_data()).replace("max_steps: 10", "max_steps: 10\n  learning_rate: 1e-3"))
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == "1e-3"
    assert load_recipe(path).training.learning_rate == pytest.approx(1e-3)


def test_overrides_set_values_parsed_as_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_data()))
    recipe = load_recipe(
        path,
        [
            "training.max_steps=5",
            "training.learning_rate=5e-4",
            "hypernetwork.target_modules=[query, value]",
            "export_adapters=false",
            "seed=3",
        ],
    )
    assert recipe.training.max_steps == 5
    assert recipe.training.learning_rate == pytest.approx(5e-4)
    assert recipe.hypernetwork.target_modules == ["query", "value"]
    assert recipe.export_adapters is False
    assert recipe.seed == 3


def test_overrides_do_not_change_the_data_they_are_given():
    data = {"training": {"max_steps": 600}}
    assert apply_overrides(data, ["training.max_steps=5"]) == {"training": {"max_steps": 5}}
    assert data == {"training": {"max_steps": 600}}
    assert apply_overrides({}, ["training.batch_size=2"]) == {"training": {"batch_size": 2}}


@pytest.mark.parametrize(
    "override, words",
    [
        ("training.max_steps", "must look like section.key=value"),
        ("trainig.max_steps=5", "did you mean 'training'?"),
        ("training.max_step=5", "did you mean 'max_steps'?"),
        ("training.max_steps.x=5", "max_steps is not a section"),
        ("training.max_steps=abc", "training.max_steps must be an integer, got 'abc'"),
        ("training.max_steps=", "training.max_steps must be an integer, got None"),
    ],
)
def test_bad_overrides_are_named(tmp_path, override, words):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_data()))
    with pytest.raises(HyperAdaptError) as caught:
        load_recipe(path, [override])
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "content, words",
    [
        ("training: {max_steps: 3\n", "is not valid YAML: line 2"),
        ("training:\n\tmax_steps: 3\n", "found character '\\t'"),
        ("- a\n- b\n", "expected a mapping of sections at the top level, got list"),
        ("just text\n", "got str"),
        ("", "tasks must be a non-empty list"),
    ],
)
def test_bad_recipe_files_are_named(tmp_path, content, words):
    path = tmp_path / "r.yaml"
    path.write_text(content)
    with pytest.raises(HyperAdaptError) as caught:
        load_recipe(path, ["training.max_steps=3"])
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_folder_and_non_utf8_recipes(tmp_path):
    with pytest.raises(HyperAdaptError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(HyperAdaptError, match="is a folder"):
        load_recipe(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes("seed: 0 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(HyperAdaptError, match="not UTF-8"):
        load_recipe(tmp_path / "latin1.yaml")


def test_saved_recipes_hold_absolute_paths_and_parse_again(tmp_path, task_dirs, monkeypatch):
    """The copy saved beside a hypernetwork must find its data from any working folder."""
    import shutil

    recipe_dir = tmp_path / "recipes"
    shutil.copytree(task_dirs["single"], recipe_dir / "data" / "single")
    (recipe_dir / "train.csv").write_text("sentence,label\na,0\n")
    data = _data(
        tasks=[
            {"folder": "data/single"},
            {
                "name": "reviews",
                "dataset": "csv",
                "data_files": {"train": "train.csv"},
                "task_type": "sequence_classification",
                "text_fields": ["sentence"],
                "labels": ["neg", "pos"],
            },
        ]
    )
    (recipe_dir / "r.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    saved = load_recipe(recipe_dir / "r.yaml").to_dict()
    assert saved["tasks"][0]["folder"] == str((recipe_dir / "data" / "single").resolve())
    assert saved["tasks"][1]["data_files"] == {"train": str((recipe_dir / "train.csv").resolve())}
    monkeypatch.chdir(Path("/"))
    again = parse_recipe(yaml.safe_load(yaml.safe_dump(saved)))
    assert again.to_dict() == saved
    assert again.tasks[0].load().name == "single"
