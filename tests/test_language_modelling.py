"""training.language_modelling: a share of the steps trains each language's embedding by masked
language modelling on the texts of that language's training tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hyperadapt.errors import HyperAdaptError

from .conftest import tiny_recipe, write_task

PAIRS = [("sentiment", "en", "sequence_classification"), ("sentiment", "de", "sequence_classification"),
         ("pairs", "fr", "sentence_pair_classification")]  # fmt: skip


def _language_recipe(tiny_bert, root: Path, share: float, steps: int = 8, **training) -> dict:
    data = tiny_recipe(tiny_bert, {}, root / "run", steps=steps, **training)
    data["hypernetwork"]["conditioning"] = ["name", "language"]
    data["training"]["language_modelling"] = share
    for seed, (group, language, task_type) in enumerate(PAIRS):
        name = f"{group}_{language}"
        folder = write_task(root / name, name, task_type, seed=seed)
        data["tasks"].append({"folder": str(folder), "group": group, "language": language})
    return data


def _tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)


def test_the_schedule_gives_the_share_of_steps_and_visits_the_languages_in_turn(tiny_bert):
    from hyperadapt.language_modelling import LanguageTexts

    texts = {"en": ["a good film"] * 4, "de": ["ein guter Film"] * 4, "fr": ["un bon film"] * 4}
    schedule = LanguageTexts(texts, 0.25, _tokenizer(tiny_bert), 2, 16, seed=0)
    steps = [schedule.language_at(s) for s in range(1, 25)]
    assert [s for s in steps if s] == ["de", "en", "fr", "de", "en", "fr"]
    assert steps[:4] == [None, None, None, "de"]


def test_a_batch_masks_some_tokens_and_labels_only_those(tiny_bert):
    from hyperadapt.language_modelling import LanguageTexts

    tokenizer = _tokenizer(tiny_bert)
    text = "the quick brown fox jumps over the lazy dog " * 4
    schedule = LanguageTexts({"en": [text] * 8}, 0.5, tokenizer, 8, 40, seed=0)
    torch.manual_seed(0)
    batch = schedule.batch("en")
    original = torch.tensor(tokenizer([text] * 8, truncation=True, max_length=40)["input_ids"])
    masked = batch["labels"] != -100
    assert 0.05 < masked.float().mean() < 0.3  # 15 % of the tokens, give or take
    assert torch.equal(batch["labels"][masked], original[masked])
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    assert (batch["input_ids"][masked] == tokenizer.mask_token_id).float().mean() > 0.5
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    assert not masked[special].any()  # [CLS], [SEP] and padding are never predicted


def test_word_lists_are_joined_into_text():
    from hyperadapt.data import TaskSpec
    from hyperadapt.language_modelling import task_texts

    spec = TaskSpec(
        name="ner", task_type="token_classification", text_fields=["tokens"], labels=["O", "B-PER"]
    )
    assert task_texts(spec, [{"tokens": ["Angela", "Merkel", "spricht"]}]) == ["Angela Merkel spricht"]


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"conditioning": ["name"]}, "has no 'language'"),
        ({"share": 1.0}, "must be a share of steps in [0, 1)"),
        ({"share": "lots"}, "language_modelling"),
        ({"adapter": "none"}, "needs generated adapters"),
    ],
)
def test_bad_language_modelling_settings_are_refused(tiny_bert, tmp_path, changes, words):
    from hyperadapt.recipe import parse_recipe

    data = _language_recipe(tiny_bert, tmp_path, changes.pop("share", 0.25))
    data["hypernetwork"].update(changes)
    with pytest.raises(HyperAdaptError, match="language_modelling") as err:
        parse_recipe(data)
    assert words in str(err.value)


def test_a_tokenizer_without_a_mask_token_is_refused(tiny_bert, tmp_path):
    from hyperadapt.language_modelling import LanguageTexts

    tokenizer = _tokenizer(tiny_bert)
    tokenizer.mask_token = None
    with pytest.raises(HyperAdaptError, match="mask token"):
        LanguageTexts({"en": ["a film"]}, 0.25, tokenizer, 2, 16, seed=0)


class _Crash(Exception):
    pass


@pytest.fixture(scope="module")
def language_modelling_run(tiny_bert, tmp_path_factory):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    root = tmp_path_factory.mktemp("language_modelling")
    data = _language_recipe(tiny_bert, root, 0.5, save_every=2, save_total_limit=2)
    result = train(parse_recipe(data), show_progress=False)
    return data, root, result


def test_training_with_language_modelling_saves_a_plain_hypernetwork(language_modelling_run, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.runtime import load_hypernetwork
    from hyperadapt.training import train

    data, root, result = language_modelling_run
    ours = load_file(Path(data["output_dir"]) / "hypernetwork" / "model.safetensors")
    without = {**data, "output_dir": str(tmp_path / "plain")}
    without["training"] = {**data["training"], "language_modelling": 0.0}
    train(parse_recipe(without), show_progress=False)
    plain = load_file(tmp_path / "plain" / "hypernetwork" / "model.safetensors")
    # The masked-LM head is a training aid: the saved hypernetwork has the same tensors either way...
    assert set(ours) == set(plain)
    # ...but its language embeddings learned from the masked text too.
    key = next(k for k in ours if "language_embedding" in k)
    assert not torch.allclose(ours[key], plain[key])
    hypernet = load_hypernetwork(Path(data["output_dir"]) / "hypernetwork")
    assert hypernet.config.languages == ["de", "en", "fr"]
    # The checkpoints keep the head, so a resumed run goes on training it.
    last = sorted((Path(data["output_dir"]) / "checkpoints").glob("step_*"))[-1]
    head = load_file(last / "model_1.safetensors")
    assert head["bias"].shape[0] == _tokenizer(data["hypernetwork"]["base_model"]).vocab_size


def test_a_resumed_run_ends_with_the_uninterrupted_weights(language_modelling_run, tmp_path, monkeypatch):
    import hyperadapt.training as training
    from hyperadapt.recipe import parse_recipe

    data, _, _ = language_modelling_run
    data = {**data, "output_dir": str(tmp_path / "run")}
    calls = {"n": 0}
    original = training.LanguageTexts.batch

    def batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # step 6, after the checkpoints of steps 2 and 4
            raise _Crash("simulated crash")
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(training.LanguageTexts, "batch", batch)
        with pytest.raises(_Crash):
            training.train(parse_recipe(data), show_progress=False)
    result = training.train(parse_recipe(data), show_progress=False, resume="latest")
    assert result.resumed_from.name == "step_000004"
    reference = Path(language_modelling_run[0]["output_dir"])
    for name in ("hypernetwork/model.safetensors", "checkpoints/step_000008/model_1.safetensors"):
        ours, theirs = load_file(tmp_path / "run" / name), load_file(reference / name)
        for key, value in theirs.items():
            torch.testing.assert_close(ours[key], value, atol=1e-6, rtol=0, msg=f"{name}: {key}")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("step_000004")
