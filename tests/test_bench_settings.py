"""`python -m bench run` checks every setting before it trains anything, and says which targets were met."""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from hyperadapt.errors import HyperAdaptError

from .conftest import write_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def data(tmp_path) -> Path:
    for name in ("glue_sst2", "trec_coarse"):
        write_task(tmp_path / "data" / name, name)
    write_task(tmp_path / "data" / "ner", "ner", "token_classification")
    return tmp_path / "data"


def _args(data: Path, out: Path, *extra: str):
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    return parser.parse_args(["--data", str(data), "--out", str(out), "--tasks", "glue_sst2", *extra])


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--steps", "0"], "--steps must be 1 or more"),
        (["--rank", "-2"], "--rank must be 1 or more"),
        (["--max-eval", "0"], "--max-eval must be 1 or more"),
        (["--repeats", "0"], "--repeats must be 1 or more"),
        (["--memory-steps", "0"], "--memory-steps must be 1 or more"),
        (["--generator-width", "0"], "--generator-width must be 1 or more"),
        (["--task-counts", "1", "0"], "--task-counts takes numbers of 1 or more, got [0]"),
        (["--depths", "-1"], "--depths takes numbers of 1 or more"),
        (["--seeds", "-1"], "--seeds must lie in 0.."),
        (["--max-length", "2"], "--max-length must be between 8 and 512"),
        (["--max-length", "1000"], "--max-length must be between 8 and 512"),
        (["--tasks", "glue_sst2", "nosuch"], "['nosuch'] are not task folders"),
        (["--tasks", "glue_sst2", "glue_sst2"], "names a task twice"),
        (["--tasks", "ner"], "ner is a token_classification task"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(data, tmp_path, extra, words):
    args = _args(data, tmp_path / "out", *extra)
    with pytest.raises(HyperAdaptError) as err:
        report.settle(args)
    assert words in str(err.value)


def test_the_speed_task_and_the_output_folder_are_checked_first(data, tmp_path):
    (data / "trec_coarse" / "task.json").unlink()
    with pytest.raises(HyperAdaptError, match="trec_coarse gives the speed and memory batches"):
        report.settle(_args(data, tmp_path / "out"))
    write_task(data / "trec_coarse", "trec_coarse")
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(HyperAdaptError, match="must name a folder"):
        report.settle(_args(data, tmp_path / "taken"))
    with pytest.raises(HyperAdaptError, match="does not exist"):
        report.settle(_args(tmp_path / "nowhere", tmp_path / "out"))


def test_quick_fills_in_only_what_is_not_given(data, tmp_path):
    args = _args(data, tmp_path / "out", "--quick", "--steps", "7")
    report.settle(args)
    assert (args.steps, args.tasks, args.seeds) == (7, ["glue_sst2"], report.QUICK["seeds"])
    full = _args(data, tmp_path / "out")
    report.settle(full)
    assert full.steps == report.FULL["steps"] and full.repeats == report.FULL["repeats"]


def test_a_bad_setting_on_the_command_line_is_one_error_line(data, tmp_path):
    command = [sys.executable, "-m", "bench", "run", "--data", str(data), "--tasks", "glue_sst2", "--steps", "0",
               "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m bench run: error: --steps must be 1 or more, got 0"
    ]


RESULTS = {
    "quality": {
        "summary": {
            "hyperadapt": {"average": {"mean": 0.60}, "trainable_parameters": 400_000},
            "peft_lora_per_task": {"average": {"mean": 0.55}, "trainable_parameters": 500_000},
        }
    },
    "training_step": {"ratio": 1.05},
    "inference": {"exported_over_peft_lora": 1.01, "merged_over_base": 0.99, "noise": 0.02},
}


def test_targets_say_met_and_not_met_from_the_figures():
    lines = report.targets(RESULTS)
    assert all(line.endswith("met.") and "NOT" not in line for line in lines), lines
    worse = copy.deepcopy(RESULTS)
    worse["training_step"]["ratio"] = 1.2
    worse["inference"]["exported_over_peft_lora"] = 1.05
    worse["quality"]["summary"]["hyperadapt"]["trainable_parameters"] = 600_000
    lines = report.targets(worse)
    assert [("NOT met" in line) for line in lines] == [True, True, True]
    assert "1.200" in lines[0] and "1.050" in lines[1] and "600,000 vs 500,000" in lines[2]


def _multilingual_args(recipe: Path, out: Path, *extra: str):
    from bench import multilingual

    parser = argparse.ArgumentParser()
    multilingual.add_arguments(parser)
    return parser.parse_args(["--recipe", str(recipe), "--out", str(out), *extra])


@pytest.fixture()
def language_recipe(tiny_bert, tmp_path) -> Path:
    import yaml

    from .conftest import tiny_recipe

    data = tiny_recipe(tiny_bert, {}, tmp_path / "run", steps=2)
    data["hypernetwork"]["conditioning"] = ["name", "language"]
    for language in ("en", "de"):
        folder = write_task(tmp_path / f"s_{language}", f"s_{language}")
        data["tasks"].append({"folder": str(folder), "group": "s", "language": language})
    other = write_task(tmp_path / "p_fr", "p_fr", "sentence_pair_classification")
    data["tasks"].append({"folder": str(other), "group": "p", "language": "fr"})
    held = write_task(tmp_path / "s_fr", "s_fr")
    data["held_out"] = [{"folder": str(held), "group": "s", "language": "fr"}]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "recipe.yaml"


@pytest.mark.parametrize(
    "extra, change, words",
    [
        (["--steps", "0"], None, "--steps must be 1 or more"),
        (["--max-eval", "0"], None, "--max-eval must be 1 or more"),
        (["--seeds", "3", "3"], None, "--seeds takes distinct numbers"),
        ([], ("conditioning", ["name"]), "has no 'language'"),
        ([], ("held_out", []), "has no held_out pairs"),
        ([], ("missing", None), "does not exist"),
        ([], ("language", "it"), "no training task is in (training languages: de, en, fr)"),
    ],
)
def test_bad_multilingual_settings_are_refused_before_anything_trains(
    language_recipe, tmp_path, extra, change, words
):
    import yaml

    from bench import multilingual

    if change:
        data = yaml.safe_load(language_recipe.read_text())
        key, value = change
        if key == "conditioning":
            data["hypernetwork"]["conditioning"] = value
        elif key == "held_out":
            del data["held_out"]
        elif key == "language":
            data["held_out"][0]["language"] = value
        else:
            data["held_out"][0]["folder"] = str(tmp_path / "nowhere")
        language_recipe.write_text(yaml.safe_dump(data))
    args = _multilingual_args(language_recipe, tmp_path / "out", *extra)
    with pytest.raises(HyperAdaptError) as err:
        multilingual.settle(args)
    assert words in str(err.value)
    assert not (tmp_path / "run").exists()


def test_multilingual_quick_keeps_the_settings_given(language_recipe, tmp_path):
    from bench import multilingual

    args = _multilingual_args(language_recipe, tmp_path / "out", "--quick", "--steps", "7")
    recipe = multilingual.settle(args)
    assert (args.seeds, args.steps, args.max_eval) == ([0], 7, 100)
    assert recipe.training.max_steps == 7


def test_multilingual_targets_read_the_figures():
    from bench import multilingual

    def run(ours_held, only_held, english_held, ours_seen, only_seen):
        scores = {
            "task_language": {"h": ours_held, "s": ours_seen},
            "task_only": {"h": only_held, "s": only_seen},
            "english_adapter": {"h": english_held},
        }
        return {"scores": scores, "held_out": ["h"], "seen": ["s"]}

    met = multilingual.targets({"runs": [run(0.5, 0.4, 0.45, 0.6, 0.6), run(0.52, 0.41, 0.44, 0.61, 0.6)]})
    assert met[0].endswith(", met.") and met[1].endswith(", met.")
    missed = multilingual.targets({"runs": [run(0.4, 0.4, 0.45, 0.5, 0.6)]})
    assert missed[0].endswith("NOT met.") and missed[1].endswith("NOT met.")


@pytest.fixture()
def decoder_recipe(tiny_llama, tiny_bert, tmp_path) -> Path:
    import yaml

    from .conftest import causal_recipe

    tasks = {n: str(write_task(tmp_path / n, n)) for n in ("a", "b")}
    data = causal_recipe(tiny_llama, tasks, tmp_path / "run", tiny_bert, steps=2)
    data["held_out"] = [{"folder": str(write_task(tmp_path / "new", "new"))}]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "recipe.yaml"


def _decoder_args(recipe: Path, out: Path, *extra: str):
    from bench import decoder

    parser = argparse.ArgumentParser()
    decoder.add_arguments(parser)
    return parser.parse_args(["--recipe", str(recipe), "--out", str(out), *extra])


@pytest.mark.parametrize(
    "extra, change, words",
    [
        (["--steps", "0"], None, "--steps must be 1 or more, got 0"),
        (["--max-eval-train", "0"], None, "--max-eval-train must be 1 or more"),
        (["--seeds", "1", "1"], None, "--seeds takes distinct numbers"),
        (
            [],
            {"model_class": "classifier", "head": "label_semantic"},
            "is not for a causal LM; set hypernetwork.model_class: causal_lm",
        ),
        ([], {"conditioning": ["name"]}, "has no 'description'"),
        ([], {"held_out": None}, "holds out no task"),
    ],
)
def test_bad_decoder_settings_are_refused_before_anything_trains(
    decoder_recipe, tmp_path, extra, change, words
):
    import yaml

    from bench import decoder

    if change:
        data = yaml.safe_load(decoder_recipe.read_text())
        for key, value in change.items():
            if key == "held_out":
                del data["held_out"]
            else:
                data["hypernetwork"][key] = value
        decoder_recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(HyperAdaptError) as err:
        decoder.settle(_decoder_args(decoder_recipe, tmp_path / "out", *extra))
    assert words in str(err.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_decoder_quick_keeps_the_settings_given(decoder_recipe, tmp_path):
    from bench import decoder

    args = _decoder_args(decoder_recipe, tmp_path / "out", "--quick", "--steps", "7")
    decoder.settle(args)
    assert (args.seeds, args.steps, args.max_eval, args.max_eval_train) == ([0], 7, 20, 5)
    full = _decoder_args(decoder_recipe, tmp_path / "out")
    decoder.settle(full)
    assert (full.seeds, full.steps, full.max_eval) == ([0, 1, 2], 150, 100)


def test_decoder_targets_read_the_figures():
    from bench import decoder

    class Task:
        def __init__(self, name):
            self.name = name

    def results(ours, random, shared, base):
        runs = [
            {
                "seed": seed,
                "scores": {
                    "hyperadapt": {"t": {"zero_shot": ours[seed], "random_description": random[seed]}},
                    "multitask_lora": {"t": {"zero_shot": shared[seed]}},
                },
            }
            for seed in range(2)
        ]
        return {"runs": runs, "no_adapter": {"t": base}}

    met = decoder._summarise(results([0.7, 0.6], [0.5, 0.5], [0.6, 0.6], 0.5), [Task("t")])
    assert met["targets"] == {
        "beats_no_adapter": True,
        "beats_multitask_lora": True,
        "right_beats_random_description": True,
    }
    assert met["hyperadapt"]["zero_shot"]["_average"]["mean"] == pytest.approx(0.65)
    missed = decoder._summarise(results([0.6, 0.6], [0.6, 0.6], [0.6, 0.7], 0.7), [Task("t")])
    assert not any(missed["targets"].values())


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--batch", "0"], "--batch must be 1 or more"),
        (["--repeats", "-1"], "--repeats must be 1 or more"),
        (["--max-length", "16"], "--max-length must be in 32..2048"),
        (["--task", "/nonexistent/task"], "is not a task folder"),
    ],
)
def test_bad_decoder_cost_settings_are_refused_before_anything_loads(task_dirs, tmp_path, extra, words):
    from bench import decoder_cost

    parser = argparse.ArgumentParser()
    decoder_cost.add_arguments(parser)
    args = parser.parse_args(["--task", task_dirs["single"], "--out", str(tmp_path / "out"), *extra])
    with pytest.raises(HyperAdaptError, match=words):
        decoder_cost.settle(args)


def test_decoder_cost_quick_keeps_the_settings_given(task_dirs, tmp_path):
    from bench import decoder_cost

    parser = argparse.ArgumentParser()
    decoder_cost.add_arguments(parser)
    args = parser.parse_args(
        ["--task", task_dirs["single"], "--out", str(tmp_path), "--quick", "--batch", "3"]
    )
    decoder_cost.settle(args)
    assert (args.batch, args.max_length, args.repeats) == (3, 96, 2)


@pytest.mark.parametrize("variant", ["hyperadapt", "multitask_lora", "no_adapter"])
def test_zero_shot_bench_variants_are_valid_settings_of_its_recipe(variant):
    from bench.zero_shot import VARIANTS
    from hyperadapt.config import HyperNetConfig
    from hyperadapt.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "zero_shot.yaml")
    HyperNetConfig.from_dict({**recipe.hypernetwork.to_dict(), **VARIANTS[variant]})  # raises if invalid


def test_zero_shot_bench_says_which_targets_were_met():
    from bench.zero_shot import targets

    def variant(**settings):
        return {
            setting: {"glue_sst2": {"mean": v}, "_average": {"mean": v, "std": 0.0}}
            for setting, v in settings.items()
        }

    summary = {
        "hyperadapt": variant(
            zero_shot=0.62, wrong_description=0.60, random_description=0.63, few_shot_4=0.6
        ),
        "multitask_lora": variant(zero_shot=0.61),
        "no_adapter": variant(zero_shot=0.64),
    }
    assert targets(summary) == {
        "beats_no_adapter": False,
        "beats_multitask_lora": True,
        "right_beats_wrong_description": True,
        "right_beats_random_description": False,
    }


def test_zero_shot_quick_keeps_the_settings_given():
    from bench.zero_shot import FULL, add_arguments, settle

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--quick", "--steps", "7", "--max-eval", "9"])
    settle(args)
    assert (args.seeds, args.steps, args.peft_steps, args.max_eval) == ([0], 7, 60, 9)
    args = parser.parse_args([])
    settle(args)
    assert {name: getattr(args, name) for name in FULL} == FULL
    assert args.held_out == ["glue_sst2", "glue_rte", "tweeteval_stance_atheism"]
