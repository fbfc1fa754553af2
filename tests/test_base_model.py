"""Target modules and heads are found from the model, for several architecture families."""

from __future__ import annotations

import pytest
import torch

from hyperadapt.base_model import default_target_modules, head_module_name, layer_index, module_kind
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec
from hyperadapt.errors import HyperAdaptError
from hyperadapt.hypernetwork import HyperNetwork
from hyperadapt.injection import AdaptedModel, check_base_matches, describe_base_model


def _tiny(family: str):
    import transformers as tf

    common = {"vocab_size": 100, "num_attention_heads": 2, "max_position_embeddings": 64, "num_labels": 1}
    if family == "bert":
        config = tf.BertConfig(hidden_size=16, num_hidden_layers=2, intermediate_size=20, **common)
    elif family == "roberta":
        config = tf.RobertaConfig(hidden_size=16, num_hidden_layers=2, intermediate_size=20, **common)
    elif family == "distilbert":
        config = tf.DistilBertConfig(
            dim=16,
            n_layers=2,
            hidden_dim=20,
            vocab_size=100,
            n_heads=2,
            max_position_embeddings=64,
            num_labels=1,
        )
    elif family == "llama":
        config = tf.LlamaConfig(
            hidden_size=16,
            num_hidden_layers=2,
            intermediate_size=20,
            num_key_value_heads=1,
            pad_token_id=0,
            **common,
        )
    elif family == "deberta-v2":
        config = tf.DebertaV2Config(hidden_size=16, num_hidden_layers=2, intermediate_size=20, **common)
    else:
        raise ValueError(family)
    torch.manual_seed(0)
    model = tf.AutoModelForSequenceClassification.from_config(config)
    return model.eval().requires_grad_(False)


@pytest.mark.parametrize(
    "family, targets, head",
    [
        ("bert", ["query", "value"], "classifier"),
        ("roberta", ["query", "value"], "classifier"),
        ("distilbert", ["q_lin", "v_lin"], "classifier"),
        ("llama", ["q_proj", "v_proj"], "score"),
        ("deberta-v2", ["query_proj", "value_proj"], "classifier"),
    ],
)
def test_targets_and_head_are_found_and_generated_weights_drive_the_model(family, targets, head):
    model = _tiny(family)
    assert default_target_modules(model) == targets
    assert head_module_name(model) == head
    spec = TaskSpec("t", "sequence_classification", ["sentence"], labels=["a", "b", "c"])
    config = HyperNetConfig(lora_rank=2, generator_width=8, task_embedding_dim=4, condition_dim=4)
    hypernet = HyperNetwork.build(config, [spec], model)
    assert hypernet.config.num_layers == 2
    adapted = AdaptedModel(model, hypernet.config)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    adapters, head_params = hypernet("t")
    logits = adapted(adapters, head_params, input_ids=ids, attention_mask=torch.ones_like(ids))
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert hypernet.generator.trunk[0].weight.grad is not None


def test_unknown_target_module_lists_the_choices():
    model = _tiny("bert")
    with pytest.raises(HyperAdaptError, match=r"'qeury' matches no linear layer.*'query'"):
        describe_base_model(model, ["qeury"])


def test_a_different_base_model_is_refused_naming_both():
    bert, llama = _tiny("bert"), _tiny("llama")
    spec = TaskSpec("t", "sequence_classification", ["sentence"], labels=["a", "b"])
    hypernet = HyperNetwork.build(
        HyperNetConfig(base_model="tiny-bert", lora_rank=2, generator_width=8), [spec], bert
    )
    with pytest.raises(HyperAdaptError, match=r"trained for base model 'tiny-bert'.*'tiny-llama' is llama"):
        check_base_matches(hypernet.config, llama, "tiny-llama")


@pytest.mark.parametrize(
    "name, layer, kind",
    [
        ("bert.encoder.layer.3.attention.self.query", 3, "attention.self.query"),
        ("model.layers.11.self_attn.q_proj", 11, "self_attn.q_proj"),
        ("distilbert.transformer.layer.0.attention.v_lin", 0, "attention.v_lin"),
    ],
)
def test_layer_index_and_module_kind_from_names(name, layer, kind):
    assert layer_index(name) == layer
    assert module_kind(name) == kind
