"""Training in less memory: training.gradient_checkpointing gives the same loss and gradients as
without it, and training.base_dtype bfloat16 (the frozen base in half precision) gives nearly the
same; on a causal LM and an encoder, with every adapter kind."""

from __future__ import annotations

import pytest
import torch
from torch.utils.checkpoint import CheckpointError

from hyperadapt.base_model import load_base, load_tokenizer
from hyperadapt.causal_lm import TextToText
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import load_task_folder
from hyperadapt.errors import HyperAdaptError
from hyperadapt.hypernetwork import HyperNetwork
from hyperadapt.injection import AdaptedModel

from .conftest import causal_recipe, tiny_recipe, with_changes


def _loss_and_grads(config, task, base_name, checkpointed: bool, dtype=torch.float32):
    torch.manual_seed(0)
    base = load_base(config, num_labels=task.spec.num_outputs, dtype=dtype)
    hypernet = HyperNetwork.build(config, [task.spec], base)
    adapted = AdaptedModel(base, hypernet.config)
    if checkpointed:
        adapted.enable_gradient_checkpointing()
    # Non-zero generated up-projections, so the adapter changes the activations that are recomputed.
    with torch.no_grad():
        for p in hypernet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tokenizer = load_tokenizer(base_name)
    examples = task.splits["train"][:4]
    adapters, head = hypernet(task.name)
    if config.is_causal_lm:
        inputs, labels = TextToText(tokenizer, task.spec, 96).training_batch(examples)
        loss = adapted.target_loss(adapters, labels, **inputs)
    else:
        from hyperadapt.evaluation import encode, labels_tensor

        inputs = dict(encode(tokenizer, task.spec, examples, 32))
        logits = adapted(adapters, head, **inputs).float()
        loss = torch.nn.functional.cross_entropy(logits, labels_tensor(task.spec, examples))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in hypernet.named_parameters() if p.grad is not None}
    return loss.detach(), grads


MODELS_AND_ADAPTERS = [("llama", "lora"), ("bert", "lora"), ("bert", "ia3"), ("bert", "bottleneck")]


def _config(base: str, model: str, adapter: str) -> HyperNetConfig:
    return HyperNetConfig(
        base_model=base,
        model_class="causal_lm" if model == "llama" else "classifier",
        adapter=adapter,
        lora_rank=4,
        generator_width=16,
    )


@pytest.mark.parametrize(("model", "adapter"), MODELS_AND_ADAPTERS)
def test_checkpointed_blocks_give_the_same_loss_and_gradients(
    model, adapter, tiny_llama, tiny_bert, task_dirs
):
    base = tiny_llama if model == "llama" else tiny_bert
    task = load_task_folder(task_dirs["single"])
    config = _config(base, model, adapter)
    loss, grads = _loss_and_grads(config, task, base, checkpointed=False)
    loss_ckpt, grads_ckpt = _loss_and_grads(config, task, base, checkpointed=True)
    assert torch.allclose(loss, loss_ckpt, atol=1e-6)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 2
    generator = [n for n in grads if n.startswith("generator") or "layer" in n]
    assert generator, sorted(grads)
    for name in grads:
        assert torch.allclose(grads[name], grads_ckpt[name], atol=1e-6, rtol=1e-4), name
    assert any(g.abs().sum() > 0 for g in grads_ckpt.values())


def test_recomputation_uses_the_generated_adapter_not_the_slots_placeholders(tiny_llama, task_dirs):
    """Checkpointing the blocks with peft's own (placeholder) LoRA weights would change the gradients."""
    task = load_task_folder(task_dirs["single"])
    config = HyperNetConfig(base_model=tiny_llama, model_class="causal_lm", lora_rank=4, generator_width=16)
    _, reference = _loss_and_grads(config, task, tiny_llama, checkpointed=False)

    def naive(adapted):  # what a plain torch.utils.checkpoint around each block would do
        from torch.utils.checkpoint import checkpoint

        for layer in adapted.model.get_base_model().model.layers:
            inner = layer.forward
            layer.forward = lambda *a, _f=inner, **k: checkpoint(_f, *a, use_reentrant=False, **k)

    original = AdaptedModel.enable_gradient_checkpointing
    AdaptedModel.enable_gradient_checkpointing = naive
    try:
        _, wrong = _loss_and_grads(config, task, tiny_llama, checkpointed=True)
    except CheckpointError:  # torch notices that the recomputation differs
        return
    finally:
        AdaptedModel.enable_gradient_checkpointing = original
    assert any(not torch.allclose(reference[n], wrong[n], atol=1e-6, rtol=1e-4) for n in reference)


def test_training_with_gradient_checkpointing_matches_training_without(
    tiny_llama, tiny_bert, task_dirs, tmp_path
):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    results = {}
    for flag in (False, True):
        data = causal_recipe(
            tiny_llama, {"single": task_dirs["single"]}, tmp_path / str(flag), tiny_bert, steps=3
        )
        with_changes(data, {"training__gradient_checkpointing": flag})
        result = train(parse_recipe(data), show_progress=False)
        results[flag] = load_safetensors(result.hypernetwork_dir)
    for name, tensor in results[False].items():
        assert torch.allclose(tensor, results[True][name], atol=1e-5), name


def test_gradient_checkpointing_must_be_true_or_false(tiny_bert, task_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe

    data = tiny_recipe(tiny_bert, {"single": task_dirs["single"]}, tmp_path)
    with_changes(data, {"training__gradient_checkpointing": "yes"})
    with pytest.raises((HyperAdaptError, ValueError), match="gradient_checkpointing must be true or false"):
        parse_recipe(data)


def load_safetensors(folder):
    from pathlib import Path

    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.parametrize(("model", "adapter"), MODELS_AND_ADAPTERS)
def test_bfloat16_base_gives_nearly_the_same_loss_and_gradients(
    model, adapter, tiny_llama, tiny_bert, task_dirs
):
    base = tiny_llama if model == "llama" else tiny_bert
    task = load_task_folder(task_dirs["single"])
    config = _config(base, model, adapter)
    loss, grads = _loss_and_grads(config, task, base, checkpointed=False)
    half, half_grads = _loss_and_grads(config, task, base, checkpointed=True, dtype=torch.bfloat16)
    assert half.dtype == torch.float32 and abs(float(half) - float(loss)) < 0.02 * float(loss)
    flat = torch.cat([g.flatten() for g in grads.values()])
    half_flat = torch.cat([half_grads[n].flatten() for n in grads])
    assert all(g.dtype == torch.float32 for g in half_grads.values())  # the hypernetwork stays float32
    assert torch.nn.functional.cosine_similarity(flat, half_flat, dim=0) > 0.99


def test_training_with_a_bfloat16_base_writes_a_float32_hypernetwork(
    tiny_llama, tiny_bert, task_dirs, tmp_path
):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = causal_recipe(tiny_llama, {"single": task_dirs["single"]}, tmp_path / "run", tiny_bert, steps=3)
    with_changes(data, {"training__base_dtype": "bfloat16", "training__gradient_checkpointing": True})
    result = train(parse_recipe(data), show_progress=False)
    weights = load_safetensors(result.hypernetwork_dir)
    assert weights and all(t.dtype == torch.float32 for t in weights.values())
    assert set(result.metrics["single"]) >= {"accuracy"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bf16", "did you mean 'bfloat16'"),
        ("BFloat16", "did you mean 'bfloat16'"),
        ("int8", "use one of float32, bfloat16, float16"),
    ],
)
def test_unknown_base_dtype_is_refused(value, message, tiny_bert, task_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe

    data = tiny_recipe(tiny_bert, {"single": task_dirs["single"]}, tmp_path)
    with_changes(data, {"training__base_dtype": value})
    with pytest.raises((HyperAdaptError, ValueError), match=message):
        parse_recipe(data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="float16 is allowed on a GPU")
def test_float16_base_needs_a_gpu(tiny_bert, task_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = tiny_recipe(tiny_bert, {"single": task_dirs["single"]}, tmp_path / "run")
    with_changes(data, {"training__base_dtype": "float16"})
    with pytest.raises(HyperAdaptError, match="base_dtype 'float16' needs a GPU"):
        train(parse_recipe(data), show_progress=False)
    assert not (tmp_path / "run").exists()
