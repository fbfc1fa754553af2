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
    batch, total = schedule.batch("en", draw=1)
    original = torch.tensor(tokenizer([text] * 8, truncation=True, max_length=40)["input_ids"])
    masked = batch["labels"] != -100
    assert 0.05 < masked.float().mean() < 0.3  # 15 % of the tokens, give or take
    assert torch.equal(batch["labels"][masked], original[masked])
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    assert (batch["input_ids"][masked] == tokenizer.mask_token_id).float().mean() > 0.5
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    assert not masked[special].any()  # [CLS], [SEP] and padding are never predicted
    assert total == int(masked.sum())
    # Each process takes its rows of the batch one process would draw, masks included.
    again = LanguageTexts({"en": [text] * 8}, 0.5, tokenizer, 8, 40, seed=0)
    share, whole = again.batch("en", draw=1, rank=1, world=2)
    assert whole == total
    for key, value in share.items():
        assert torch.equal(value, batch[key][4:]), key


def test_the_head_maps_hidden_states_to_narrower_word_embeddings():
    from hyperadapt.language_modelling import MaskedLanguageModelHead, masked_lm_loss

    head = MaskedLanguageModelHead(hidden_size=32, vocab_size=50, embedding_size=16)  # as in ALBERT
    embeddings = torch.randn(50, 16)
    hidden = torch.randn(2, 5, 32, requires_grad=True)
    labels = torch.full((2, 5), -100)
    labels[0, 1], labels[1, 3] = 7, 9
    loss = masked_lm_loss(head, hidden, labels, embeddings, total_masked=2)
    assert head(hidden[0], embeddings).shape == (5, 50)
    assert loss.item() > 0
    # A share with nothing masked still runs the head (every process joins its gradient
    # exchange), and adds nothing.
    head.zero_grad()
    empty = masked_lm_loss(head, hidden, torch.full((2, 5), -100), embeddings, total_masked=2, world=2)
    empty.backward()
    assert empty.item() == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in head.parameters())


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


def test_too_few_language_modelling_steps_are_refused_before_training(tiny_bert, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = _language_recipe(tiny_bert, tmp_path, 0.25, steps=8)  # 2 steps for 3 languages
    with pytest.raises(HyperAdaptError, match="gives 2 masked-LM steps, fewer than the 3 languages") as err:
        train(parse_recipe(data), show_progress=False)
    assert "at least 0.375" in str(err.value)
    assert not (tmp_path / "run" / "hypernetwork").exists()


def test_a_checkpoint_from_before_the_setting_counts_it_as_off():
    from hyperadapt.checkpoints import recipe_differences

    old = {"training": {"max_steps": 8}}
    assert recipe_differences(old, {"training": {"max_steps": 8, "language_modelling": 0.0}}) == []
    assert recipe_differences(old, {"training": {"max_steps": 8, "language_modelling": 0.25}}) == [
        "training.language_modelling"
    ]


def test_a_tokenizer_without_a_mask_token_is_refused(tiny_bert, tmp_path):
    from hyperadapt.language_modelling import check_can_mask

    tokenizer = _tokenizer(tiny_bert)
    tokenizer.mask_token = None
    with pytest.raises(HyperAdaptError, match="mask token") as err:
        check_can_mask(tokenizer, "some/decoder")
    assert "some/decoder's has none" in str(err.value)


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
    from hyperadapt.language_modelling import LanguageTexts
    from hyperadapt.recipe import parse_recipe

    data, _, _ = language_modelling_run
    data = {**data, "output_dir": str(tmp_path / "run")}
    calls = {"n": 0}
    original = LanguageTexts.batch

    def batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # step 6, after the checkpoints of steps 2 and 4
            raise _Crash("simulated crash")
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(LanguageTexts, "batch", batch)
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


def test_two_processes_match_one_process_with_the_same_global_batch(language_modelling_run, tmp_path):
    from .test_distributed import _two_process_job

    data, _, _ = language_modelling_run
    reference = load_file(Path(data["output_dir"]) / "hypernetwork" / "model.safetensors")
    two = {**data, "output_dir": str(tmp_path / "two"), "training": {**data["training"], "batch_size": 4}}
    done = _two_process_job("same", two, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(tmp_path / "weights" / f"rank{r}.safetensors") for r in (0, 1)]
    for key, value in reference.items():
        torch.testing.assert_close(ranks[0][key], value, atol=1e-5, rtol=0, msg=key)
        assert torch.equal(ranks[0][key], ranks[1][key]), key
