"""Language conditioning: one hypernetwork for task x language pairs, and pairs it never trained on.

The session's run trains on sentiment in English and German and on a sentence-pair task in English
and French, conditioned on task names (groups) and languages; sentiment in French is the pair it
never saw, with sentiment and French each seen elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperadapt.cli import main
from hyperadapt.conditioning import Condition
from hyperadapt.errors import HyperAdaptError
from hyperadapt.runtime import Runtime, load_hypernetwork

from .conftest import tiny_recipe, write_task

PAIRS = [("sentiment", "en", "sequence_classification"), ("sentiment", "de", "sequence_classification"),
         ("pairs", "en", "sentence_pair_classification"), ("pairs", "fr", "sentence_pair_classification")]  # fmt: skip


@pytest.fixture(scope="module")
def language_run(tiny_bert, tmp_path_factory):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    root = tmp_path_factory.mktemp("languages")
    data = tiny_recipe(tiny_bert, {}, root / "out", steps=6)
    data["hypernetwork"]["conditioning"] = ["name", "language"]
    for seed, (group, language, task_type) in enumerate(PAIRS):
        name = f"{group}_{language}"
        folder = write_task(root / name, name, task_type, seed=seed)
        data["tasks"].append({"folder": str(folder), "group": group, "language": language})
    unseen = write_task(root / "sentiment_fr", "sentiment_fr", seed=9)
    data["held_out"] = [{"folder": str(unseen), "group": "sentiment", "language": "fr"}]
    return train(parse_recipe(data), show_progress=False), unseen


def test_tasks_of_a_group_share_one_head_and_name_embedding(language_run):
    hypernet = load_hypernetwork(language_run[0].hypernetwork_dir)
    assert hypernet.task_keys == ["sentiment", "pairs"]
    assert sorted(hypernet.head.heads) == ["pairs", "sentiment"]
    assert hypernet.conditioner.task_embedding.num_embeddings == 2
    assert hypernet.config.languages == ["de", "en", "fr"]
    assert hypernet.conditioner.language_embedding.num_embeddings == 3
    # A training task's name stands for its group in its own language.
    by_name = hypernet("sentiment_de")[0]["attention.self.query"][0]
    by_pair = hypernet(Condition(task="sentiment", language="de"))[0]["attention.self.query"][0]
    torch.testing.assert_close(by_name, by_pair, atol=0, rtol=0)


def test_the_language_changes_the_generated_adapter(language_run):
    from hyperadapt.hypernetwork import HyperNetwork

    hypernet = load_hypernetwork(language_run[0].hypernetwork_dir)

    def query_b(model, language):
        return model(Condition(task="sentiment", language=language))[0]["attention.self.query"][1]

    assert (query_b(hypernet, "en") - query_b(hypernet, "fr")).abs().max() > 1e-6
    # Before training a language changes nothing: an unseen pair starts from its task's adapter.
    torch.manual_seed(0)
    fresh = HyperNetwork(hypernet.config)
    torch.testing.assert_close(query_b(fresh, "en"), query_b(fresh, "fr"), atol=0, rtol=0)


def test_generate_for_a_pair_never_trained_writes_a_peft_adapter_that_matches(language_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    hypernet_dir = str(language_run[0].hypernetwork_dir)
    out = tmp_path / "sentiment_fr"
    assert main(["generate", hypernet_dir, "--task", "sentiment", "--language", "fr", "--out", str(out)]) == 0
    info = json.loads((out / "hyperadapt_task.json").read_text())
    assert (info["task"]["name"], info["task"]["language"], info["task"]["group"]) == (
        "sentiment_fr",
        "fr",
        "sentiment",
    )
    assert "the language `fr`" in info["generated_from"]
    assert info["task"]["description"].startswith("Task sentiment in language fr, generated for a pair never")

    hypernet = load_hypernetwork(hypernet_dir)
    runtime = Runtime(hypernet)
    inputs = dict(runtime.tokenizer(["le film was good", "bad and dull"], return_tensors="pt", padding=True))
    with torch.no_grad():
        expected = runtime.adapted(*hypernet(Condition(task="sentiment", language="fr")), **inputs)
        base = AutoModelForSequenceClassification.from_pretrained(hypernet.config.base_model, num_labels=2)
        got = PeftModel.from_pretrained(base, str(out)).eval()(**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_eval_scores_a_new_folder_as_a_group_in_its_language(language_run, tmp_path, capsys):
    hypernet_dir = str(language_run[0].hypernetwork_dir)
    folder = str(language_run[1])
    assert main(["eval", hypernet_dir, "--task", folder, "--group", "sentiment", "--language", "fr"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["mode"] == "task sentiment in fr"
    # The same numbers as the adapter generated for the pair, scored on its own.
    out = tmp_path / "a"
    assert main(["generate", hypernet_dir, "--task", "sentiment", "--language", "fr", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--task", folder]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["accuracy"] == pytest.approx(scored["accuracy"], abs=1e-9)
    assert exported["n"] == scored["n"]


def _error(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hyperadapt: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_an_unknown_language_is_refused_with_the_known_ones(language_run, tmp_path, capsys):
    hypernet_dir = str(language_run[0].hypernetwork_dir)
    line = _error(
        ["generate", hypernet_dir, "--task", "sentiment", "--language", "nl", "--out", str(tmp_path / "a")],
        capsys,
    )
    assert "unknown language 'nl'" in line and "de, en, fr" in line
    assert not (tmp_path / "a").exists()
    with pytest.raises(HyperAdaptError, match="unknown language 'xx'"):
        load_hypernetwork(hypernet_dir)(Condition(task="sentiment", language="xx"))


def test_a_group_name_alone_needs_a_language(language_run):
    with pytest.raises(HyperAdaptError, match="group of tasks in several languages"):
        load_hypernetwork(language_run[0].hypernetwork_dir)("sentiment")


def test_language_flags_are_refused_without_language_conditioning(trained_run, tmp_path, capsys):
    hypernet_dir = str(trained_run.hypernetwork_dir)
    line = _error(
        ["generate", hypernet_dir, "--task", "single", "--language", "de", "--out", str(tmp_path / "a")],
        capsys,
    )
    assert "not on language" in line and "--language" in line
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    "second, words",
    [
        ({"task_type": "regression"}, ["group 'sentiment'", "differ in task type or labels"]),
        ({"labels": ["positive", "negative"]}, ["group 'sentiment'", "same labels (in the same order)"]),
    ],
)
def test_tasks_of_one_group_must_share_type_and_labels(tiny_bert, tmp_path, second, words):
    from hyperadapt.recipe import parse_recipe

    data = tiny_recipe(tiny_bert, {}, tmp_path / "out")
    task_type = second.get("task_type", "sequence_classification")
    one = write_task(tmp_path / "one", "one")
    two = write_task(tmp_path / "two", "two", task_type)
    data["tasks"] = [
        {"folder": str(one), "group": "sentiment"},
        {
            "folder": str(two),
            "group": "sentiment",
            **({"labels": second["labels"]} if "labels" in second else {}),
        },
    ]
    with pytest.raises(HyperAdaptError) as err:
        parse_recipe(data).load_tasks()
    for word in words:
        assert word in str(err.value)


def test_a_group_named_like_another_task_is_refused(tiny_bert, tmp_path):
    from hyperadapt.recipe import parse_recipe

    data = tiny_recipe(tiny_bert, {}, tmp_path / "out")
    one, two = write_task(tmp_path / "one", "one"), write_task(tmp_path / "two", "two")
    data["tasks"] = [{"folder": str(one)}, {"folder": str(two), "group": "one"}]
    with pytest.raises(HyperAdaptError, match="group 'one', which is the name of another task"):
        parse_recipe(data).load_tasks()


def test_a_saved_hypernetwork_generates_the_same_pair_adapters(language_run, tmp_path):
    hypernet = load_hypernetwork(language_run[0].hypernetwork_dir)
    hypernet.save_pretrained(tmp_path / "copy")
    again = load_hypernetwork(Path(tmp_path / "copy"))
    for language in ("en", "de", "fr"):
        condition = Condition(task="sentiment", language=language)
        first, second = hypernet(condition)[0], again(condition)[0]
        for kind in first:
            torch.testing.assert_close(first[kind][0], second[kind][0], atol=0, rtol=0)


def test_a_held_out_pair_is_scored_during_training_with_its_group_head(language_run, capsys):
    result, folder = language_run
    summary = json.loads((result.output_dir / "metrics.json").read_text())
    held = summary["validation"]["sentiment_fr"]
    assert held["held_out"] is True and 0.0 <= held["accuracy"] <= 1.0
    assert "zero_shot" not in held  # a training group's head, not a task it never saw
    # The same score as eval gives the pair afterwards (the recipe's held-out entry, same examples).
    hypernet_dir = str(result.hypernetwork_dir)
    assert main(["eval", hypernet_dir, "--task", str(folder), "--group", "sentiment", "--language", "fr",
                 "--max-examples", str(held["n"])]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(held["accuracy"], abs=1e-9)


def test_a_new_held_out_task_needs_a_group_or_a_label_semantic_head(tiny_bert, tmp_path):
    from hyperadapt.recipe import parse_recipe

    data = tiny_recipe(tiny_bert, {}, tmp_path / "out")
    one, two = write_task(tmp_path / "one", "one"), write_task(tmp_path / "two", "two")
    data["tasks"] = [{"folder": str(one), "group": "sentiment"}]
    data["held_out"] = [{"folder": str(two)}]
    with pytest.raises(
        HyperAdaptError, match="label_semantic; or, for a training task's group in another language"
    ):
        parse_recipe(data)
    data["held_out"] = [{"folder": str(two), "group": "sentiment"}]
    assert parse_recipe(data).held_out[0].group == "sentiment"
    data["held_out"] = [{"folder": str(two), "group": "pos"}]
    with pytest.raises(
        HyperAdaptError, match="group 'pos', which no training task has .training groups: sentiment"
    ):
        parse_recipe(data)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"language": "DE"}, "language 'DE' is not a language code such as 'en', 'de' or 'pt-BR'"),
        ({"language": "DE"}, "did you mean 'de'?"),
        ({"language": ""}, "language '' is not a language code"),
        ({"held_language": "it"}, "'it', which no training task is in (training languages: de, en)"),
        ({"conditioning": ["language"]}, "conditioning: [language] alone"),
    ],
)
def test_bad_languages_in_a_recipe_are_refused_before_training(tiny_bert, tmp_path, changes, words):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = tiny_recipe(tiny_bert, {}, tmp_path / "out", steps=2)
    data["hypernetwork"]["conditioning"] = changes.get("conditioning", ["name", "language"])
    for language in ("en", "de"):
        folder = write_task(tmp_path / f"s_{language}", f"s_{language}")
        data["tasks"].append({"folder": str(folder), "group": "s", "language": language})
    if "language" in changes:
        data["tasks"][0]["language"] = changes["language"]
    held = write_task(tmp_path / "s_x", "s_x")
    data["held_out"] = [{"folder": str(held), "group": "s", "language": changes.get("held_language", "de")}]
    with pytest.raises(HyperAdaptError) as err:
        train(parse_recipe(data), show_progress=False)
    assert words in str(err.value)
    assert not (tmp_path / "out").exists()


def test_cli_language_mistakes_get_one_line_naming_the_fix(language_run, tmp_path, capsys):
    hypernet_dir, folder = str(language_run[0].hypernetwork_dir), str(language_run[1])
    out = str(tmp_path / "a")
    line = _error(["generate", hypernet_dir, "--task", "sentiment", "--out", out], capsys)
    assert "'sentiment' is a group of tasks in de, en; say which language with --language" in line
    line = _error(["generate", hypernet_dir, "--task", "sentiment", "--language", "FR", "--out", out], capsys)
    assert "unknown language 'FR'" in line and "Did you mean 'fr'?" in line
    line = _error(["eval", hypernet_dir, "--task", folder, "--group", "sentiment_en"], capsys)
    assert "is a training task of group 'sentiment'; use --group sentiment" in line
    line = _error(["generate", hypernet_dir, "--task", "sentiment_de", "--out", "/proc/hyperadapt/a"], capsys)
    assert "cannot create output folder /proc/hyperadapt/a" in line
    assert not (tmp_path / "a").exists()


def test_eval_names_the_language_and_finds_held_out_entries_by_name(language_run, capsys):
    hypernet_dir = str(language_run[0].hypernetwork_dir)
    assert main(["eval", hypernet_dir, "--task", "sentiment_de", "--language", "en"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "seen, in en"
    # The recipe's held-out entry, by name: scored as its group in its language.
    assert main(["eval", hypernet_dir, "--task", "sentiment_fr"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "task sentiment in fr"
