"""Bottleneck adapters from the hypernetwork: placement found from the model, injection, export and loading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hyperadapt import from_pretrained
from hyperadapt.base_model import default_target_modules
from hyperadapt.bottleneck import BottleneckAdapter, inject_bottlenecks
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec
from hyperadapt.errors import HyperAdaptError
from hyperadapt.export import export_adapter
from hyperadapt.hypernetwork import HyperNetwork
from hyperadapt.injection import AdaptedModel
from hyperadapt.runtime import Runtime, load_hypernetwork

from .conftest import tiny_recipe
from .test_base_model import _tiny

SPEC = TaskSpec("t", "sequence_classification", ["sentence"], labels=["a", "b", "c"])
SMALL = {"generator_width": 8, "task_embedding_dim": 4, "condition_dim": 4, "bottleneck_size": 4}
IDS = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
SENTENCES = ["test 1 the film was good and great", "test 2 the film was dull and grim"]


def _tiny_gpt2():
    import transformers as tf

    config = tf.GPT2Config(
        vocab_size=100, n_embd=16, n_layer=2, n_head=2, n_positions=64, num_labels=1, pad_token_id=0
    )
    torch.manual_seed(0)
    return tf.AutoModelForSequenceClassification.from_config(config).eval().requires_grad_(False)


@pytest.mark.parametrize(
    "family, houlsby",
    [
        ("bert", ["attention.output.dense", "output.dense"]),
        ("roberta", ["attention.output.dense", "output.dense"]),
        ("distilbert", ["attention.out_lin", "ffn.lin2"]),
        ("llama", ["self_attn.o_proj", "mlp.down_proj"]),
        ("deberta-v2", ["attention.output.dense", "output.dense"]),
        ("gpt2", ["attn.c_proj", "mlp.c_proj"]),
    ],
)
def test_placement_is_found_from_the_model_and_generated_adapters_drive_it(family, houlsby):
    model = _tiny_gpt2() if family == "gpt2" else _tiny(family)
    assert default_target_modules(model, "bottleneck", "houlsby") == houlsby
    assert default_target_modules(model, "bottleneck", "pfeiffer") == houlsby[1:]
    hypernet = HyperNetwork.build(HyperNetConfig(adapter="bottleneck", **SMALL), [SPEC], model)
    assert sorted(hypernet.config.module_shapes) == sorted(houlsby)
    with torch.no_grad():
        plain = model(input_ids=IDS, attention_mask=torch.ones_like(IDS)).logits
    adapted = AdaptedModel(model, hypernet.config)
    wrapped = [m for m in adapted.model.modules() if isinstance(m, BottleneckAdapter)]
    assert len(wrapped) == 2 * len(houlsby)  # two layers
    adapters, head = hypernet("t")
    for kind, (down_w, down_b, up_w, up_b) in adapters.items():
        features = hypernet.config.module_shapes[kind][1]
        assert down_w.shape == (2, 4, features) and down_b.shape == (2, 4)
        assert up_w.shape == (2, features, 4) and up_b.shape == (2, features)
    logits = adapted(adapters, head, input_ids=IDS, attention_mask=torch.ones_like(IDS))
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(
        h.weight.grad is not None
        for h in [*hypernet.generator.a_heads.values(), *hypernet.generator.b_heads.values()]
    )
    # The model's own classifier differs from the task head, but with the adapter at zero its
    # features are the base model's: a zero up projection changes nothing.
    zero = {k: (d, db, torch.zeros_like(u), torch.zeros_like(ub)) for k, (d, db, u, ub) in adapters.items()}
    base_head = {n: p for n, p in model.get_submodule(hypernet.config.head_name).named_parameters()}
    with torch.no_grad():
        same = adapted(zero, base_head, input_ids=IDS, attention_mask=torch.ones_like(IDS))
    torch.testing.assert_close(same, plain, atol=1e-6, rtol=0)


def test_a_bottleneck_adds_its_residual_branch_to_the_module_output():
    linear = torch.nn.Linear(6, 5)
    wrapped = BottleneckAdapter(linear, 3, "relu")
    x = torch.randn(2, 6)
    torch.testing.assert_close(wrapped(x), linear(x))  # starts as the identity
    with torch.no_grad():
        wrapped.adapter_up.weight.normal_()
        h = linear(x)
        expected = h + wrapped.adapter_up(torch.relu(wrapped.adapter_down(h)))
    torch.testing.assert_close(wrapped(x), expected)


def test_pfeiffer_targets_do_not_select_the_attention_output_by_suffix():
    model = _tiny("bert")
    hypernet = HyperNetwork.build(
        HyperNetConfig(adapter="bottleneck", bottleneck_placement="pfeiffer", **SMALL), [SPEC], model
    )
    assert hypernet.config.module_layers == {"output.dense": [0, 1]}


def test_chunked_bottleneck_generation_has_the_same_shapes():
    model = _tiny("bert")
    plain = HyperNetwork.build(HyperNetConfig(adapter="bottleneck", **SMALL), [SPEC], model)
    chunked = HyperNetwork.build(
        HyperNetConfig(adapter="bottleneck", generator_chunk_size=10, **SMALL), [SPEC], model
    )
    shapes = {k: [t.shape for t in v] for k, v in plain("t")[0].items()}
    assert {k: [t.shape for t in v] for k, v in chunked("t")[0].items()} == shapes


@pytest.fixture(scope="module")
def bottleneck_run(tiny_bert, task_dirs, tmp_path_factory):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = tiny_recipe(tiny_bert, task_dirs, tmp_path_factory.mktemp("bottleneck") / "run", steps=6)
    del data["hypernetwork"]["lora_rank"]  # a LoRA setting: refused with another kind
    data["hypernetwork"].update(adapter="bottleneck", bottleneck_size=4, bottleneck_activation="gelu")
    return train(parse_recipe(data), show_progress=False)


# Runs in a fresh interpreter: hyperadapt's one loader, then a transformers pipeline.
LOAD = """
import json, sys, torch
from transformers import AutoTokenizer, pipeline
from hyperadapt import from_pretrained
base, folder, sentences = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model = from_pretrained(base, folder)
assert type(model).__module__.startswith("transformers."), type(model)
tok = AutoTokenizer.from_pretrained(base)
with torch.no_grad():
    logits = model(**tok(sentences, return_tensors="pt", padding=True)).logits
labels = [r["label"] for r in pipeline("text-classification", model=model, tokenizer=tok)(sentences)]
print(json.dumps({"logits": logits.tolist(), "labels": labels}))
"""


@pytest.mark.parametrize("task, num_labels", [("single", 2), ("score", 1)])
def test_exported_bottleneck_adapter_loads_in_a_fresh_process_and_matches(
    bottleneck_run, tmp_path, task, num_labels
):
    hypernet = load_hypernetwork(bottleneck_run.hypernetwork_dir)
    assert hypernet.config.adapter == "bottleneck"
    folder = export_adapter(hypernet, task, tmp_path / task)
    assert {p.name for p in folder.iterdir()} >= {
        "bottleneck_config.json",
        "adapter_model.safetensors",
        "README.md",
    }
    card = (folder / "README.md").read_text()
    assert "library_name: hyperadapt" in card and "from hyperadapt import from_pretrained" in card
    runtime = Runtime(hypernet)
    inputs = dict(runtime.tokenizer(SENTENCES, return_tensors="pt", padding=True))
    with torch.no_grad():
        expected = runtime.adapted(*hypernet(task), **inputs)
    result = subprocess.run(
        [sys.executable, "-c", LOAD, hypernet.config.base_model, str(folder), json.dumps(SENTENCES)],
        capture_output=True, text=True, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""},
    )  # fmt: skip
    got = json.loads(result.stdout.strip().splitlines()[-1])
    torch.testing.assert_close(torch.tensor(got["logits"]), expected, atol=1e-5, rtol=0)
    if num_labels > 1:
        names = hypernet.spec(task).labels
        assert got["labels"] == [names[i] for i in expected.argmax(-1).tolist()]
    # The bottleneck's training run exported the same adapter.
    exported = json.loads((bottleneck_run.adapter_dirs[task] / "bottleneck_config.json").read_text())
    assert exported["modules"] == json.loads((folder / "bottleneck_config.json").read_text())["modules"]


def test_a_base_model_object_is_accepted_and_eval_scores_the_folder(
    bottleneck_run, tmp_path, task_dirs, capsys
):
    from hyperadapt.base_model import load_sequence_classifier
    from hyperadapt.cli import main

    hypernet = load_hypernetwork(bottleneck_run.hypernetwork_dir)
    folder = export_adapter(hypernet, "single", tmp_path / "single")
    base = load_sequence_classifier(hypernet.config.base_model, num_labels=2)
    model = from_pretrained(base, folder)
    assert model is base and sum(isinstance(m, BottleneckAdapter) for m in model.modules()) == 4
    assert main(["eval", str(folder), "--task", task_dirs["single"]]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "exported adapter" and 0.0 <= report["accuracy"] <= 1.0


def _folder(bottleneck_run, tmp_path):
    hypernet = load_hypernetwork(bottleneck_run.hypernetwork_dir)
    return hypernet, export_adapter(hypernet, "single", tmp_path / "single")


def test_a_wrong_base_model_is_refused_naming_both(bottleneck_run, tmp_path):
    _, folder = _folder(bottleneck_run, tmp_path)
    with pytest.raises(
        HyperAdaptError,
        match=r"generated for base model .*\(bert, hidden 32, 4 adapted modules\), but 'LlamaForSequenceClassification' is llama with hidden size 16",
    ):
        from_pretrained(_tiny("llama"), folder)


def test_a_base_loaded_with_other_labels_is_told_the_number_and_left_untouched(bottleneck_run, tmp_path):
    from hyperadapt.base_model import load_sequence_classifier

    hypernet, folder = _folder(bottleneck_run, tmp_path)
    model = load_sequence_classifier(hypernet.config.base_model, num_labels=5)
    with pytest.raises(
        HyperAdaptError, match="loaded with num_labels=5.*load the base model with num_labels=2"
    ):
        from_pretrained(model, folder)
    assert not any(isinstance(m, BottleneckAdapter) for m in model.modules())
    _edit(folder, bottleneck_size=8)  # a damaged folder is refused before the model is wrapped
    good = load_sequence_classifier(hypernet.config.base_model, num_labels=2)
    with pytest.raises(HyperAdaptError, match="other shapes"):
        from_pretrained(good, folder)
    assert not any(isinstance(m, BottleneckAdapter) for m in good.modules())
    _edit(folder, bottleneck_size=4)
    assert sum(isinstance(m, BottleneckAdapter) for m in from_pretrained(good, folder).modules()) == 4
    with pytest.raises(
        HyperAdaptError, match="already carries bottleneck adapters; load the adapter onto a fresh"
    ):
        from_pretrained(good, folder)


def test_a_deeper_base_of_the_same_width_is_refused(bottleneck_run, tmp_path):
    from .conftest import make_tiny_bert

    _, folder = _folder(bottleneck_run, tmp_path)
    deeper = make_tiny_bert(tmp_path / "deeper", layers=3)
    with pytest.raises(
        HyperAdaptError, match="has 6 modules of the adapted kinds .* where the adapter has 4"
    ):
        from_pretrained(str(deeper), folder)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "adapter_model.safetensors").write_bytes(b"\x00" * 10), "corrupt or truncated"),
        (lambda f: (f / "adapter_model.safetensors").unlink(), "has no adapter_model.safetensors"),
        (lambda f: (f / "bottleneck_config.json").write_text("{"), "not valid JSON"),
        (lambda f: (f / "bottleneck_config.json").unlink(), "bottleneck_config.json is missing"),
        (lambda f: _edit(f, bottleneck_size="8"), r"damaged \(missing or wrong: bottleneck_size\)"),
        (lambda f: _edit(f, format_version=9), "upgrade hyperadapt"),
        (lambda f: _edit(f, bottleneck_size=8), "other shapes"),
        (lambda f: _edit(f, bottleneck_size=10**12), "other shapes"),  # refused before any allocation
        (
            lambda f: _edit(f, modules=["bert.encoder.layer.0.output.dense"]),
            "has 4 modules of the adapted kinds",
        ),
        (lambda f: _edit(f, modules=[]), "no adapted modules listed"),
        (lambda f: _edit(f, format_version=0), "upgrade hyperadapt"),
        (lambda f: _edit(f, labels=["only one"]), "labels do not match num_labels"),
        (lambda f: _edit(f, head_name="classifer"), "has no 'classifer' head"),
        (lambda f: _edit(f, num_labels=1, labels=None), "other shapes"),
        (lambda f: _retensor(f, lambda t: t.to(torch.int64)), "not finite floating-point"),
        (lambda f: _retensor(f, lambda t: t * float("nan")), "not finite floating-point"),
    ],
)
def test_a_damaged_folder_gets_one_clear_error(bottleneck_run, tmp_path, damage, message):
    hypernet, folder = _folder(bottleneck_run, tmp_path)
    damage(folder)
    with pytest.raises(HyperAdaptError, match=message):
        from_pretrained(hypernet.config.base_model, folder)


def test_pickled_weights_are_refused_and_never_unpickled(bottleneck_run, tmp_path):
    hypernet, folder = _folder(bottleneck_run, tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, folder / "adapter_model.bin")
    with pytest.raises(HyperAdaptError, match="only pickled weights"):
        from_pretrained(hypernet.config.base_model, folder)


def test_a_peft_folder_is_pointed_to_peft(trained_run, tmp_path):
    folder = trained_run.adapter_dirs["single"]
    with pytest.raises(HyperAdaptError, match="PeftModel.from_pretrained"):
        from_pretrained("minilm", folder)


def _retensor(folder, change):
    from safetensors.torch import load_file, save_file

    file = folder / "adapter_model.safetensors"
    state = load_file(file)
    key = next(k for k in state if k.endswith("adapter_up.weight"))
    state[key] = change(state[key])
    save_file(state, file)


def _edit(folder, **changes):
    file = folder / "bottleneck_config.json"
    config = json.loads(file.read_text())
    config.update(changes)
    file.write_text(json.dumps(config))


def test_injecting_twice_is_refused():
    model = _tiny("bert")
    name = "bert.encoder.layer.0.output.dense"
    inject_bottlenecks(model, [name], 2, "relu")
    with pytest.raises(HyperAdaptError, match="already carries"):
        inject_bottlenecks(model, [name], 2, "relu")


def test_a_bottleneck_wider_than_the_modules_and_an_oversized_chunk_are_refused():
    model = _tiny("bert")  # hidden 16
    with pytest.raises(HyperAdaptError, match="bottleneck_size 32 is wider than the 16 features"):
        HyperNetwork.build(
            HyperNetConfig(adapter="bottleneck", **{**SMALL, "bottleneck_size": 32}), [SPEC], model
        )
    with pytest.raises(
        HyperAdaptError, match=r"generator_chunk_size 100000 is larger than .* \(80 entries\)"
    ):
        HyperNetwork.build(
            HyperNetConfig(adapter="bottleneck", generator_chunk_size=100000, **SMALL), [SPEC], model
        )


def test_a_hypernetwork_config_naming_a_missing_head_is_one_error():
    model = _tiny("bert")
    config = HyperNetwork.build(HyperNetConfig(adapter="bottleneck", **SMALL), [SPEC], model).config
    config.head_name = "classifer"
    with pytest.raises(HyperAdaptError, match="no 'classifer' head"):
        AdaptedModel(model, config)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"bottleneck_placement": "houlsbi"}, "bottleneck_placement must be one of 'houlsby', 'pfeiffer'"),
        ({"bottleneck_activation": "softmax"}, "bottleneck_activation must be one of"),
        ({"bottleneck_size": 0}, "bottleneck_size must be a positive integer"),
        ({"generator_chunk_size": 0}, "generator_chunk_size must be a positive integer or null"),
    ],
)
def test_bad_bottleneck_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        HyperNetConfig(adapter="bottleneck", **changes)


def test_a_bottleneck_adapter_pushed_to_the_hub_loads_by_repo_id(bottleneck_run, tmp_path):
    """Push with `hyperadapt push`, then load by repo id in another fresh process, over real HTTP."""
    from .hub_server import FakeHub
    from .test_hub import _env, _run_steps, cli, py

    hypernet = load_hypernetwork(bottleneck_run.hypernetwork_dir)
    folder = export_adapter(hypernet, "single", tmp_path / "single")
    runtime = Runtime(hypernet)
    inputs = dict(runtime.tokenizer(SENTENCES, return_tensors="pt", padding=True))
    with torch.no_grad():
        expected = runtime.adapted(*hypernet("single"), **inputs)
    base = hypernet.config.base_model
    load = f"""
import torch
from transformers import AutoTokenizer
from hyperadapt import from_pretrained
from hyperadapt.errors import HyperAdaptError
model = from_pretrained({base!r}, "tester/bottleneck")
tok = AutoTokenizer.from_pretrained({base!r})
with torch.no_grad():
    result = {{"logits": model(**tok({SENTENCES!r}, return_tensors="pt", padding=True)).logits.tolist()}}
for repo in ("tester/nothing-here", "tester/pickled-bottleneck"):
    try:
        from_pretrained({base!r}, repo)
    except HyperAdaptError as err:
        result[repo] = str(err)
"""
    server = FakeHub().start()
    try:
        pushed = _run_steps(
            [cli("push", "push", str(folder), "tester/bottleneck")],
            _env(server, tmp_path / "a"),
            tmp_path,
            "push",
        )
        assert pushed["push"]["rc"] in (0, None), pushed["push"]
        files = server.files("tester/bottleneck")
        assert {"bottleneck_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
        card = files["README.md"].decode()
        assert (
            "library_name: hyperadapt" in card
            and "from_pretrained(" in card
            and '"tester/bottleneck"' in card
        )
        server.add_files(
            "tester/pickled-bottleneck",
            {
                "bottleneck_config.json": files["bottleneck_config.json"],
                "adapter_model.bin": b"\x80\x04pickle",
            },
        )
        pulled = _run_steps([py("load", load)], _env(server, tmp_path / "b"), tmp_path, "pull")["load"]
    finally:
        server.stop()
    assert "value" in pulled and pulled["value"], pulled.get("traceback")
    got = pulled["value"]
    torch.testing.assert_close(torch.tensor(got["logits"]), expected, atol=1e-5, rtol=0)
    assert "tester/nothing-here" in got["tester/nothing-here"]
    assert "only pickled weights" in got["tester/pickled-bottleneck"]


def test_eval_of_a_damaged_bottleneck_folder_is_one_error_line(bottleneck_run, tmp_path, task_dirs, capsys):
    from hyperadapt.cli import main

    _, folder = _folder(bottleneck_run, tmp_path)
    info = json.loads((folder / "hyperadapt_task.json").read_text())
    (folder / "hyperadapt_task.json").write_text(json.dumps({**info, "base_model": 5}))
    assert main(["eval", str(folder), "--task", task_dirs["single"]]) == 2
    assert "does not name its base model (as text); pass --base-model" in capsys.readouterr().err
    (folder / "bottleneck_config.json").unlink()
    assert main(["eval", str(folder), "--task", task_dirs["single"]]) == 2
    assert "a damaged exported adapter, not a hypernetwork" in capsys.readouterr().err
