"""Chunked generation: output heads that emit fixed-size chunks, whatever the adapted modules' sizes."""

from __future__ import annotations

import pytest
import torch

from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec
from hyperadapt.hypernetwork import HyperNetwork
from hyperadapt.injection import AdaptedModel
from hyperadapt.runtime import load_hypernetwork

from .conftest import tiny_recipe
from .test_export import assert_peft_matches_hypernetwork

SPEC = TaskSpec("t", "sequence_classification", ["sentence"], labels=["a", "b"])
SMALL = {"generator_width": 8, "task_embedding_dim": 4, "condition_dim": 4, "lora_rank": 2}


def _bert(hidden: int):
    import transformers as tf

    config = tf.BertConfig(
        vocab_size=100, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden,
        max_position_embeddings=64, num_labels=1,
    )  # fmt: skip
    torch.manual_seed(0)
    return tf.AutoModelForSequenceClassification.from_config(config).eval().requires_grad_(False)


def _output_layers(hypernet: HyperNetwork) -> int:
    g = hypernet.generator
    return sum(p.numel() for m in (g.a_heads, g.b_heads, g.l_heads, g.chunk_heads) for p in m.parameters())


@pytest.mark.parametrize("adapter", ["lora", "ia3", "bottleneck"])
def test_chunked_output_layers_do_not_grow_with_hidden_size(adapter):
    sizes = {}
    for hidden in (16, 64):
        for chunk in (None, 12):
            config = HyperNetConfig(adapter=adapter, generator_chunk_size=chunk, **SMALL)
            sizes[hidden, chunk] = _output_layers(HyperNetwork.build(config, [SPEC], _bert(hidden)))
    assert sizes[16, 12] == sizes[64, 12]
    assert sizes[64, None] > 3 * sizes[16, None]  # whole-tensor heads grow with the widths


@pytest.mark.parametrize("adapter", ["lora", "ia3", "bottleneck"])
def test_chunked_generation_emits_every_tensor_and_trains_every_part(adapter):
    model = _bert(16)
    whole = HyperNetwork.build(HyperNetConfig(adapter=adapter, **SMALL), [SPEC], model)
    # 7 does not divide the tensors' sizes: the last chunk of each is cut.
    chunked = HyperNetwork.build(
        HyperNetConfig(adapter=adapter, generator_chunk_size=7, **SMALL), [SPEC], model
    )
    adapters, head = chunked("t")
    assert {k: [t.shape for t in v] for k, v in adapters.items()} == {
        k: [t.shape for t in v] for k, v in whole("t")[0].items()
    }
    # Different chunks of one tensor differ (each has its own embedding), and layers differ.
    first = next(iter(adapters.values()))[0]
    assert not torch.allclose(first[0], first[1])
    adapted = AdaptedModel(model, chunked.config)
    ids = torch.tensor([[5, 6, 7, 8]])
    adapted(adapters, head, input_ids=ids).sum().backward()
    generator = chunked.generator
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.chunk_heads.parameters())
    assert all(t.weight.grad is not None for t in generator.chunk_embeddings.values())
    assert not generator.a_heads and not generator.b_heads and not generator.l_heads


def test_a_chunked_run_saves_reloads_and_exports_a_matching_peft_adapter(tiny_bert, task_dirs, tmp_path):
    from hyperadapt.export import export_adapter
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = tiny_recipe(tiny_bert, task_dirs, tmp_path / "run", steps=4)
    data["hypernetwork"]["generator_chunk_size"] = 64
    result = train(parse_recipe(data), show_progress=False)
    hypernet = load_hypernetwork(result.hypernetwork_dir)
    assert hypernet.config.generator_chunk_size == 64
    again = load_hypernetwork(result.hypernetwork_dir)
    for kind, tensors in hypernet("single")[0].items():
        for a, b in zip(tensors, again("single")[0][kind]):
            assert torch.equal(a, b)
    folder = export_adapter(hypernet, "single", tmp_path / "single")
    assert_peft_matches_hypernetwork(hypernet, "single", folder, 2)
