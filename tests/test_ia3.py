"""(IA)^3 from the same hypernetwork: generated scaling vectors, exported as a standard peft IA3 folder."""

from __future__ import annotations

import json

import pytest
import torch

from hyperadapt.base_model import default_target_modules
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec
from hyperadapt.errors import HyperAdaptError
from hyperadapt.export import export_adapter
from hyperadapt.hypernetwork import HyperNetwork
from hyperadapt.injection import AdaptedModel, describe_base_model

from .conftest import tiny_recipe
from .test_base_model import _tiny
from .test_export import assert_peft_matches_hypernetwork

SPEC = TaskSpec("t", "sequence_classification", ["sentence"], labels=["a", "b", "c"])
IA3 = HyperNetConfig(adapter="ia3", generator_width=8, task_embedding_dim=4, condition_dim=4)


@pytest.fixture(scope="module")
def ia3_run(tiny_bert, task_dirs, tmp_path_factory):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = tiny_recipe(tiny_bert, task_dirs, tmp_path_factory.mktemp("ia3") / "run", steps=6)
    del data["hypernetwork"]["lora_rank"]  # a LoRA setting: refused with another kind
    data["hypernetwork"]["adapter"] = "ia3"
    return train(parse_recipe(data), show_progress=False)


@pytest.mark.parametrize(
    "family, targets, feedforward",
    [
        ("bert", ["key", "value", "output.dense"], ["attention.output.dense", "output.dense"]),
        ("roberta", ["key", "value", "output.dense"], ["attention.output.dense", "output.dense"]),
        ("llama", ["k_proj", "v_proj", "down_proj"], ["mlp.down_proj"]),
        (
            "deberta-v2",
            ["key_proj", "value_proj", "output.dense"],
            ["attention.output.dense", "output.dense"],
        ),
    ],
)
def test_ia3_targets_come_from_peft_and_generated_vectors_drive_the_model(family, targets, feedforward):
    model = _tiny(family)
    assert default_target_modules(model, "ia3") == targets
    hypernet = HyperNetwork.build(IA3, [SPEC], model)
    assert hypernet.config.feedforward_kinds == feedforward
    adapters, head = hypernet("t")
    for kind, (vector,) in adapters.items():
        in_f, out_f = hypernet.config.module_shapes[kind]
        assert vector.shape == (
            len(hypernet.config.module_layers[kind]),
            in_f if kind in feedforward else out_f,
        )
        assert torch.allclose(vector, torch.ones_like(vector), atol=0.1)  # starts near the identity
    adapted = AdaptedModel(model, hypernet.config)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    logits = adapted(adapters, head, input_ids=ids, attention_mask=torch.ones_like(ids))
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(h.weight.grad is not None for h in hypernet.generator.l_heads.values())
    assert not hypernet.generator.a_heads and not hypernet.generator.b_heads


def test_scaling_vectors_change_the_outputs_the_way_peft_applies_them():
    model = _tiny("bert")
    hypernet = HyperNetwork.build(IA3, [SPEC], model)
    adapted = AdaptedModel(model, hypernet.config)
    ids = torch.tensor([[5, 6, 7, 8]])
    adapters, head = hypernet("t")
    ones = {k: (torch.ones_like(v),) for k, (v,) in adapters.items()}
    doubled = {k: (2 * torch.ones_like(v),) for k, (v,) in adapters.items()}
    with torch.no_grad():
        plain = adapted(ones, head, input_ids=ids)
        scaled = adapted(doubled, head, input_ids=ids)
    assert not torch.allclose(plain, scaled)


def test_a_model_without_an_ia3_default_asks_for_target_modules():
    with pytest.raises(
        HyperAdaptError, match="no \\(IA\\)\\^3 default for DistilBertForSequenceClassification"
    ):
        HyperNetwork.build(IA3, [SPEC], _tiny("distilbert"))


def test_feedforward_modules_must_be_among_the_targets():
    with pytest.raises(
        HyperAdaptError, match=r"feedforward_modules \['fc9'\] are not among the target modules"
    ):
        describe_base_model(_tiny("bert"), ["key", "value"], "ia3", ["fc9"])


def test_chosen_targets_take_only_the_default_feedforward_modules_among_them():
    hypernet = HyperNetwork.build(
        HyperNetConfig(adapter="ia3", target_modules=["key", "value"], generator_width=8),
        [SPEC],
        _tiny("bert"),
    )
    assert hypernet.config.feedforward_modules == [] and hypernet.config.feedforward_kinds == []


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"feedforward_modules": ["output.dense"]}, "feedforward_modules applies to adapter: ia3 only"),
        ({"adapter": "ia3", "feedforward_modules": [""]}, "feedforward_modules must be a list of names"),
        ({"target_modules": ["key", "key"]}, "target_modules lists a module twice"),
    ],
)
def test_bad_adapter_module_settings_are_refused_with_the_fix(settings, message):
    with pytest.raises(ValueError, match=message):
        HyperNetConfig(**settings)


def test_an_unknown_adapter_kind_lists_the_kinds():
    with pytest.raises(
        ValueError, match="adapter must be one of 'lora', 'ia3', 'bottleneck', 'none', got 'ia4'"
    ):
        HyperNetConfig(adapter="ia4")


@pytest.mark.parametrize("task, num_labels", [("single", 2), ("score", 1)])
def test_exported_ia3_adapter_is_a_peft_ia3_folder_that_matches_the_hypernetwork(
    ia3_run, tmp_path, task, num_labels
):
    hypernet = ia3_run.hypernetwork
    folder = export_adapter(hypernet, task, tmp_path / task)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "IA3" and config["task_type"] == "SEQ_CLS"
    assert set(config["target_modules"]) == {"key", "value", "output.dense"}
    assert config["feedforward_modules"] == ["output.dense"]
    card = (folder / "README.md").read_text()
    assert "an (IA)^3 adapter generated by hyperadapt" in card and "LoRA" not in card
    assert "generates (IA)^3 adapters" in (ia3_run.hypernetwork_dir / "README.md").read_text()

    assert_peft_matches_hypernetwork(hypernet, task, folder, num_labels)
    # The generated vectors really are in the file (not the peft initial ones).
    from safetensors.torch import load_file

    vectors = [v for k, v in load_file(folder / "adapter_model.safetensors").items() if "ia3_l" in k]
    assert vectors and any(not torch.equal(v, torch.ones_like(v)) for v in vectors)


def test_a_training_run_with_ia3_writes_ia3_adapters_and_the_hypernetwork_reloads(ia3_run):
    from hyperadapt.runtime import load_hypernetwork

    for folder in ia3_run.adapter_dirs.values():
        assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "IA3"
    reloaded = load_hypernetwork(ia3_run.hypernetwork_dir)
    assert reloaded.config.adapter == "ia3"
    original = ia3_run.hypernetwork.eval()
    with torch.no_grad():
        ours, theirs = original("single")[0], reloaded("single")[0]
    assert set(ours) == set(theirs)
    for kind, (vector,) in ours.items():
        assert torch.equal(vector, theirs[kind][0]), kind


@pytest.mark.parametrize("adapter, targets", [("lora", ["value", "query"]), ("ia3", None)])
def test_a_saved_hypernetwork_generates_the_same_adapters_whatever_order_its_modules_were_found_in(
    adapter, targets, tmp_path
):
    config = HyperNetConfig(
        adapter=adapter, target_modules=targets, generator_width=8, task_embedding_dim=4, condition_dim=4
    )
    hypernet = HyperNetwork.build(config, [SPEC], _tiny("bert")).eval()
    hypernet.save_pretrained(tmp_path)
    reloaded = HyperNetwork.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        ours, theirs = hypernet("t")[0], reloaded("t")[0]
    for kind, tensors in ours.items():
        for a, b in zip(tensors, theirs[kind], strict=True):
            assert torch.equal(a, b), kind
