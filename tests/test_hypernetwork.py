"""The hypernetwork on tiny random BERTs: initialisation, gradients, sizes, save and load."""

from __future__ import annotations

import json

import pytest
import torch

from hyperadapt.base_model import load_sequence_classifier, load_tokenizer
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec
from hyperadapt.errors import HyperAdaptError
from hyperadapt.hypernetwork import HyperNetwork
from hyperadapt.injection import AdaptedModel

from .conftest import make_tiny_bert

SPECS = [
    TaskSpec("sent", "sequence_classification", ["sentence"], labels=["neg", "pos"]),
    TaskSpec("topic", "sequence_classification", ["sentence"], labels=["a", "b", "c"]),
    TaskSpec("sim", "regression", ["s1", "s2"]),
]
SMALL = {"lora_rank": 4, "generator_width": 16, "task_embedding_dim": 8, "condition_dim": 8}


def _build(base_path, **config):
    base = load_sequence_classifier(base_path)
    hypernet = HyperNetwork.build(HyperNetConfig(base_model=base_path, **{**SMALL, **config}), SPECS, base)
    return hypernet, AdaptedModel(base, hypernet.config), load_tokenizer(base_path)


def _inputs(tokenizer):
    return dict(tokenizer(["the film was good", "a dull and grim story"], return_tensors="pt", padding=True))


@pytest.mark.parametrize(
    "field, value",
    [
        ("lora_rank", 0),
        ("lora_rank", 2.5),
        ("lora_alpha", -1),
        ("generator_depth", 0),
        ("generator_width", True),
        ("dropout", 1.0),
        ("init_b_std", -0.1),
        ("target_modules", []),
        ("target_modules", "query"),
        ("base_model", ""),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        HyperNetConfig(**{field: value})


def test_first_adapters_leave_the_base_model_almost_unchanged(tiny_bert):
    hypernet, adapted, tokenizer = _build(tiny_bert)
    adapters, head = hypernet("sent")
    zero = {kind: (a * 0, b * 0) for kind, (a, b) in adapters.items()}
    with torch.no_grad():
        generated = adapted(adapters, head, **_inputs(tokenizer))
        plain = adapted(zero, head, **_inputs(tokenizer))
    assert generated.shape == (2, 2)
    assert (generated - plain).abs().max().item() < 1e-3


def test_gradients_reach_only_the_hypernetwork(tiny_bert):
    hypernet, adapted, tokenizer = _build(tiny_bert)
    assert all(not p.requires_grad for p in adapted.parameters())
    adapters, head = hypernet("topic")
    loss = adapted(adapters, head, **_inputs(tokenizer)).logsumexp(-1).sum()
    loss.backward()
    assert all(p.grad is None for p in adapted.parameters())
    grads = {name: p.grad for name, p in hypernet.named_parameters()}
    # Everything that took part in generating "topic" gets a gradient; other tasks' heads do not.
    for name, grad in grads.items():
        if name.startswith("head.heads.") and not name.startswith("head.heads.topic."):
            assert grad is None, name
        else:
            assert grad is not None and grad.abs().sum() > 0, name


def test_generator_size_does_not_grow_with_depth(tmp_path):
    shallow = make_tiny_bert(tmp_path / "l2", layers=2)
    deep = make_tiny_bert(tmp_path / "l6", layers=6)
    h2, _, _ = _build(str(shallow))
    h6, _, _ = _build(str(deep))
    assert h2.config.num_layers == 2 and h6.config.num_layers == 6
    assert h2.generator_parameters() == h6.generator_parameters()
    # Only the layer-id embedding table grows: one row per extra layer.
    assert h6.num_parameters() - h2.num_parameters() == 4 * h2.config.layer_embedding_dim


def test_one_adapter_per_module_and_layer_with_lora_shapes(tiny_bert):
    hypernet, _, _ = _build(tiny_bert)
    adapters, head = hypernet("topic")
    assert set(adapters) == {"attention.self.query", "attention.self.value"}
    for a, b in adapters.values():
        assert a.shape == (2, 4, 32) and b.shape == (2, 32, 4)
    assert head["weight"].shape == (3, 32) and head["bias"].shape == (3,)
    assert hypernet("sim")[1]["weight"].shape == (1, 32)


def test_tasks_get_different_adapters(tiny_bert):
    hypernet, _, _ = _build(tiny_bert)
    a1 = hypernet("sent")[0]["attention.self.query"][0]
    a2 = hypernet("topic")[0]["attention.self.query"][0]
    assert not torch.allclose(a1, a2)


def test_unknown_task_names_the_known_ones(tiny_bert):
    hypernet, _, _ = _build(tiny_bert)
    with pytest.raises(HyperAdaptError, match=r"unknown task 'snet'.*Did you mean 'sent'"):
        hypernet("snet")


def test_save_and_load_round_trip_exactly(tiny_bert, tmp_path):
    hypernet, adapted, tokenizer = _build(tiny_bert)
    with torch.no_grad():
        for p in hypernet.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    hypernet.save_pretrained(tmp_path / "h")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "h").iterdir()}
    loaded = HyperNetwork.from_pretrained(tmp_path / "h")
    assert loaded.config == hypernet.config
    original, restored = hypernet.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    with torch.no_grad():
        assert torch.equal(
            adapted(*hypernet("sent"), **_inputs(tokenizer)), adapted(*loaded("sent"), **_inputs(tokenizer))
        )


def test_load_is_strict_about_weights(tiny_bert, tmp_path):
    from safetensors.torch import load_file, save_file

    hypernet, _, _ = _build(tiny_bert)
    hypernet.save_pretrained(tmp_path / "h")
    state = load_file(tmp_path / "h" / "model.safetensors")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "h" / "model.safetensors")
    with pytest.raises(HyperAdaptError, match="unexpected"):
        HyperNetwork.from_pretrained(tmp_path / "h")


def test_truncated_or_pickled_weights_are_refused(tiny_bert, tmp_path):
    hypernet, _, _ = _build(tiny_bert)
    hypernet.save_pretrained(tmp_path / "h")
    weights = tmp_path / "h" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(HyperAdaptError, match="corrupt or truncated"):
        HyperNetwork.from_pretrained(tmp_path / "h")
    weights.unlink()
    torch.save(hypernet.state_dict(), tmp_path / "h" / "pytorch_model.bin")
    with pytest.raises(HyperAdaptError, match="pickled weights"):
        HyperNetwork.from_pretrained(tmp_path / "h")


def test_config_json_describes_the_base_and_tasks(tiny_bert, tmp_path):
    hypernet, _, _ = _build(tiny_bert)
    hypernet.save_pretrained(tmp_path / "h")
    config = json.loads((tmp_path / "h" / "config.json").read_text())
    assert config["base_model"] == tiny_bert
    assert [t["name"] for t in config["tasks"]] == ["sent", "topic", "sim"]
    assert config["module_layers"] == {"attention.self.query": [0, 1], "attention.self.value": [0, 1]}
