"""Description attention: a description also draws on the training tasks it resembles."""

from __future__ import annotations

import json

import pytest
import torch

from hyperadapt.cli import main
from hyperadapt.conditioning import Condition, Conditioner
from hyperadapt.errors import HyperAdaptError
from hyperadapt.runtime import Runtime, load_hypernetwork, new_task_spec

from .conftest import tiny_recipe
from .test_export import assert_peft_matches_hypernetwork

LABELS = "negative: the text speaks badly of it; positive: the text speaks well of it"


def _conditioner() -> Conditioner:
    torch.manual_seed(0)
    conditioner = Conditioner(
        ["description"],
        ["a", "b", "c"],
        embedding_dim=4,
        text_dim=3,
        condition_dim=6,
        description_attention=True,
    )
    conditioner.set_memory_keys(
        {
            "a": torch.tensor([1.0, 0.0, 0.0]),
            "b": torch.tensor([0.0, 1.0, 0.0]),
            "c": torch.tensor([0.0, 0.0, 1.0]),
        }
    )
    return conditioner


def test_a_new_description_attends_to_the_tasks_it_resembles():
    conditioner = _conditioner()
    weights = conditioner.attention(Condition(description=torch.tensor([0.9, 0.1, 0.0])))
    assert weights.sum().item() == pytest.approx(1.0)
    assert weights.argmax().item() == 0 and weights[0] > 0.9  # temperature 0.1 at the start
    unrelated = conditioner.attention(Condition(description=torch.tensor([1.0, 1.0, 1.0])))
    torch.testing.assert_close(unrelated, torch.full((3,), 1 / 3))


def test_a_training_tasks_vector_learns_from_its_own_task():
    conditioner = _conditioner()
    own = Condition(task="a", description=torch.tensor([1.0, 0.0, 0.0]))
    weights = conditioner.attention(own)
    assert weights.argmax().item() == 0 and weights[0] > 0.99
    (conditioner(own) * torch.arange(6.0)).sum().backward()  # a plain sum of a LayerNorm is constant
    grad = conditioner.memory_values.weight.grad.abs().sum(-1)
    assert grad[0] > 100 * grad[1:].max()  # the gradient goes to its own vector


def test_description_attention_needs_description_conditioning(tiny_bert, task_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe

    data = tiny_recipe(tiny_bert, task_dirs, tmp_path / "o")
    data["hypernetwork"].update(conditioning=["name"], description_attention=True)
    with pytest.raises(HyperAdaptError, match="add 'description' to hypernetwork.conditioning"):
        parse_recipe(data)


@pytest.fixture(scope="module")
def attending_run(tiny_bert, task_dirs, tmp_path_factory):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = tiny_recipe(tiny_bert, task_dirs, tmp_path_factory.mktemp("attending") / "out", steps=6)
    data["hypernetwork"].update(
        conditioning=["description"],
        head="label_semantic",
        text_encoder=tiny_bert,
        description_attention=True,
    )
    data["tasks"][0]["descriptions"] = ["Is the review positive?", "Tell good reviews from bad ones."]
    return train(parse_recipe(data), show_progress=False)


def test_keys_are_the_training_descriptions_and_survive_saving(attending_run):
    hypernet = load_hypernetwork(attending_run.hypernetwork_dir)
    runtime = Runtime(hypernet)
    encoder = runtime.conditions.encoder
    spec = hypernet.spec("single")
    texts = [spec.description, "Is the review positive?", "Tell good reviews from bad ones."]
    expected = torch.nn.functional.normalize(encoder(texts), dim=-1).mean(0)
    keys = hypernet.conditioner.memory_keys
    torch.testing.assert_close(keys[hypernet.conditioner.task_index["single"]], expected, atol=1e-5, rtol=0)
    assert all(row.norm() > 0 for row in keys)  # every training task has its key


def test_an_attending_hypernetworks_adapter_loads_with_plain_peft(attending_run, tmp_path):
    out = tmp_path / "new"
    description = "Decide if a product review is happy."
    hypernet_dir = str(attending_run.hypernetwork_dir)
    assert (
        main(["generate", hypernet_dir, "--description", description, "--labels", LABELS, "--out", str(out)])
        == 0
    )
    assert json.loads((out / "hyperadapt_task.json").read_text())["task"]["labels"] == [
        "negative",
        "positive",
    ]

    hypernet = load_hypernetwork(hypernet_dir)
    condition = Runtime(hypernet).condition(new_task_spec("new", description, LABELS))
    assert_peft_matches_hypernetwork(hypernet, condition, out, num_labels=2)  # a fresh process, peft only
