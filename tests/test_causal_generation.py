"""Free-text answers on a causal LM (task_type text_generation): prompts and targets, greedy
answers that match transformers' own generate(), exact match, training beside classification
tasks, and adapters that plain peft loads and answers with."""

from __future__ import annotations

import contextlib
import io
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hyperadapt.causal_lm import IGNORE, TextToText, greedy_answers, peft_hidden_states
from hyperadapt.data import load_task_folder
from hyperadapt.errors import HyperAdaptError

from .conftest import NEGATIVE, POSITIVE, causal_recipe, tiny_recipe


def write_generation_task(folder: Path, name: str, n: int = 60, seed: int = 0) -> Path:
    """Answer with the sentence's last word: short, learnable, free text."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "task_id": name,
        "task_type": "text_generation",
        "language": "en",
        "text_fields": ["sentence"],
        "label_field": "answer",
        "labels": [],
        "description": "Write the last word of the sentence.",
    }
    (folder / "task.json").write_text(json.dumps(meta))
    for split, size in (("train", n), ("validation", n // 3), ("test", n // 3)):
        rows = []
        for i in range(size):
            words = rng.sample(POSITIVE + NEGATIVE, 3)
            rows.append({"sentence": f"{split} {i} the film was {' '.join(words)}", "answer": words[-1]})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def echo_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("generation")
    return {
        "echo": str(write_generation_task(root / "echo", "echo")),
        "echo_new": str(write_generation_task(root / "echo_new", "echo_new", seed=1)),
    }


@pytest.fixture(scope="module")
def llama_tokenizer(tiny_llama):
    from hyperadapt.base_model import load_tokenizer

    return load_tokenizer(tiny_llama)


@pytest.fixture(scope="module")
def generation_run(tiny_llama, tiny_bert, task_dirs, echo_dirs, tmp_path_factory):
    """A causal-LM hypernetwork trained on a classification and a free-text task, one free-text
    task held out."""
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    out = tmp_path_factory.mktemp("generation_run") / "out"
    data = causal_recipe(
        tiny_llama, {"single": task_dirs["single"], "echo": echo_dirs["echo"]}, out, tiny_bert
    )
    data["held_out"] = [{"folder": echo_dirs["echo_new"]}]
    return train(parse_recipe(data), show_progress=False)


def test_a_free_text_task_prompts_its_description_and_scores_the_answer_tokens(llama_tokenizer, echo_dirs):
    task = load_task_folder(echo_dirs["echo"])
    assert task.spec.is_generation and task.spec.main_metric == "exact_match"
    example = task.splits["train"][0]
    prompts = TextToText(llama_tokenizer, task.spec, max_length=128)
    inputs, labels = prompts.training_batch([example])
    text = llama_tokenizer.decode(inputs["input_ids"][0])
    assert task.spec.description in text and "Answer with one of" not in text
    assert llama_tokenizer.decode(labels[0][labels[0] != IGNORE]) == example["label"] + "<|im_end|>"


def test_free_text_targets_must_be_text_and_labels_are_refused(tmp_path):
    folder = write_generation_task(tmp_path / "bad", "bad", n=6)
    (folder / "train.jsonl").write_text(json.dumps({"sentence": "a b", "answer": "  "}) + "\n")
    with pytest.raises(HyperAdaptError, match="must be non-empty text"):
        load_task_folder(folder)
    meta = json.loads((folder / "task.json").read_text())
    meta["labels"] = ["a", "b"]
    (folder / "task.json").write_text(json.dumps(meta))
    with pytest.raises(HyperAdaptError, match="a text generation task takes no labels"):
        load_task_folder(folder)


def test_greedy_answers_equal_transformers_generate(tiny_llama, llama_tokenizer, echo_dirs):
    """Batched, right-padded, without a cache: the same tokens as generate() on each prompt alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    task = load_task_folder(echo_dirs["echo"])
    prompts = TextToText(llama_tokenizer, task.spec, max_length=128, answer_tokens=6)
    examples = task.splits["test"][:5]
    examples[1] = {**examples[1], "sentence": examples[1]["sentence"] + " and much longer than the rest"}
    hidden, head = peft_hidden_states(model)
    ours = greedy_answers(hidden, head, prompts, examples, max_new_tokens=6)
    for example, answer in zip(examples, ours, strict=True):
        ids = torch.tensor([prompts.prompt(example)])
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=6,
                do_sample=False,
                eos_token_id=[llama_tokenizer.eos_token_id, prompts.end[0]],
                pad_token_id=prompts.pad,
            )
        expected = llama_tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        assert answer == expected


def test_training_scores_free_text_by_exact_match_beside_classification(generation_run):
    metrics = generation_run.metrics
    assert set(metrics["echo"]) >= {"exact_match", "n"} and 0.0 <= metrics["echo"]["exact_match"] <= 1.0
    assert "accuracy" in metrics["single"]
    assert metrics["echo_new"]["zero_shot"] and metrics["echo_new"]["n"] == 20


def _run(args: list[str]) -> dict:
    from hyperadapt.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(args) == 0
    return json.loads(buffer.getvalue())


def test_a_free_text_adapter_from_a_description_loads_with_plain_peft_and_answers_as_hyperadapt_does(
    generation_run, echo_dirs, tiny_llama, tmp_path
):
    from hyperadapt.cli import main

    out = tmp_path / "adapter"
    hypernet_dir = str(generation_run.hypernetwork_dir)
    description = "Write down the final word of the sentence."
    assert (
        main(
            ["generate", hypernet_dir, "--name", "last_word", "--description", description, "--out", str(out)]
        )
        == 0
    )
    info = json.loads((out / "hyperadapt_task.json").read_text())
    assert info["task"]["task_type"] == "text_generation" and info["prompt"]["answers"] == {}
    assert "Answer with one of" not in info["prompt"]["before_input"]
    assert "free text" in (out / "README.md").read_text()
    common = ["--task", echo_dirs["echo_new"], "--split", "test"]
    from_adapter = _run(["eval", str(out), *common])
    from_hypernet = _run(["eval", hypernet_dir, *common, "--description", description])
    assert from_adapter["exact_match"] == from_hypernet["exact_match"] and from_adapter["n"] == 20

    # A fresh process with transformers and peft only: generate() writes what hyperadapt's eval wrote.
    from peft import PeftModel

    from hyperadapt.base_model import load_causal_lm, load_tokenizer
    from hyperadapt.data import align_task

    task = align_task(load_task_folder(echo_dirs["echo_new"]), load_task_folder(echo_dirs["echo_new"]).spec)
    import dataclasses

    spec = dataclasses.replace(task.spec, description=description, name="last_word")
    tokenizer = load_tokenizer(tiny_llama)
    prompts = TextToText(tokenizer, spec, max_length=96)
    model = PeftModel.from_pretrained(load_causal_lm(tiny_llama), str(out)).eval()
    examples = task.splits["test"][:3]
    expected = greedy_answers(*peft_hidden_states(model), prompts, examples, max_new_tokens=5)
    texts = [ex["sentence"] for ex in examples]
    script = textwrap.dedent(
        f"""
        import json, sys, torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
        base = AutoModelForCausalLM.from_pretrained({tiny_llama!r})
        tokenizer = AutoTokenizer.from_pretrained({tiny_llama!r})
        model = PeftModel.from_pretrained(base, {str(out)!r}).eval()
        prompt = json.load(open({str(out / "hyperadapt_task.json")!r}))["prompt"]
        answers = []
        for text in {texts!r}:
            inputs = tokenizer(prompt["before_input"] + text + prompt["after_input"], return_tensors="pt",
                               add_special_tokens=prompt["add_special_tokens"])
            end = tokenizer.convert_tokens_to_ids(prompt["answer_end"])
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=5, do_sample=False, eos_token_id=end)
            answers.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        assert "hyperadapt" not in sys.modules
        print(json.dumps(answers))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def test_free_text_needs_a_causal_lm(tiny_bert, echo_dirs, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    data = tiny_recipe(tiny_bert, {"echo": echo_dirs["echo"]}, tmp_path / "out")
    with pytest.raises(HyperAdaptError, match="text_generation tasks .* need model_class causal_lm"):
        train(parse_recipe(data), show_progress=False)
    assert not (tmp_path / "out").exists()


def test_answers_too_long_to_write_are_refused_before_training(tiny_llama, tiny_bert, tmp_path):
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    folder = write_generation_task(tmp_path / "long", "long", n=9)
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    rows[2]["answer"] = " ".join(["word"] * 80)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = causal_recipe(tiny_llama, {"long": str(folder)}, tmp_path / "out", tiny_bert)
    with pytest.raises(HyperAdaptError, match="1 of 9 training answers are longer than the 31 tokens"):
        train(parse_recipe(data), show_progress=False)
    assert not (tmp_path / "out").exists()


def test_empty_labels_on_a_causal_hypernetwork_point_to_free_text(generation_run, tmp_path, capsys):
    from hyperadapt.cli import main

    out = tmp_path / "adapter"
    args = ["generate", str(generation_run.hypernetwork_dir), "--description", "Say it.", "--labels", " "]
    assert main([*args, "--out", str(out)]) == 2
    assert "leave --labels out for free-text answers" in capsys.readouterr().err and not out.exists()
