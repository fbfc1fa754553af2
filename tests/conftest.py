"""Shared fixtures: tiny random base models and small task folders, all built in a temp dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

POSITIVE = ["good", "great", "fine", "lovely", "superb", "nice", "happy", "bright"]
NEGATIVE = ["bad", "awful", "poor", "sad", "dull", "ugly", "weak", "grim"]


def _tokenizer():
    from transformers import AutoTokenizer

    from hyperadapt.base_model import resolve_base_model

    return AutoTokenizer.from_pretrained(resolve_base_model("minilm"))


def make_tiny_bert(path: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


def write_task(
    folder: Path, name: str, task_type: str = "sequence_classification", n: int = 60, seed: int = 0
) -> Path:
    """A small, learnable task: sentiment from word lists, or a pair or regression variant."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if task_type == "token_classification":
        return _write_token_task(folder, name, n, rng)
    pair = task_type == "sentence_pair_classification"
    meta = {
        "task_id": name,
        "task_type": task_type,
        "language": "en",
        "text_fields": ["sentence1", "sentence2"] if pair else ["sentence"],
        "label_field": "label",
        "labels": [] if task_type == "regression" else ["negative", "positive"],
        "label_descriptions": {} if task_type == "regression" else {"negative": "bad", "positive": "good"},
        "description": f"A small test task called {name}.",
    }
    (folder / "task.json").write_text(json.dumps(meta))
    for split, size in (("train", n), ("validation", n // 3), ("test", n // 3)):
        rows = []
        for i in range(size):
            label = rng.random() < 0.5
            words = rng.sample(POSITIVE if label else NEGATIVE, 3)
            text = f"{split} {i} the film was {' and '.join(words)}"
            if pair:
                rows.append({"sentence1": text, "sentence2": f"{split} {i} yes", "label": int(label)})
            elif task_type == "regression":
                rows.append({"sentence": text, "label": 4.0 * label + rng.random()})
            else:
                rows.append({"sentence": text, "label": int(label)})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


NER_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
PEOPLE = [["Ada", "Lovelace"], ["Alan", "Turing"], ["Grace", "Hopper"], ["Marie", "Curie"]]
PLACES = [["London"], ["New", "York"], ["Paris"], ["Rio", "de", "Janeiro"]]


def _write_token_task(folder: Path, name: str, n: int, rng) -> Path:
    """Sentences naming a person and a place, tagged in BIO."""
    meta = {
        "task_id": name,
        "task_type": "token_classification",
        "language": "en",
        "text_fields": ["tokens"],
        "label_field": "tags",
        "labels": NER_TAGS,
        "label_descriptions": {"O": "not part of a name", "B-PER": "first word of a person's name"},
        "description": f"Tag the names of people and places ({name}).",
    }
    (folder / "task.json").write_text(json.dumps(meta))
    for split, size in (("train", n), ("validation", n // 3), ("test", n // 3)):
        rows = []
        for i in range(size):
            person, place = rng.choice(PEOPLE), rng.choice(PLACES)
            words = [split, str(i), *person, "lived", "in", *place]
            tags = ["O", "O", "B-PER", *["I-PER"] * (len(person) - 1), "O", "O", "B-LOC"]
            tags += ["I-LOC"] * (len(place) - 1)
            rows.append({"tokens": words, "tags": tags})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="session")
def task_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tasks")
    return {
        "single": str(write_task(root / "single", "single")),
        "pair": str(write_task(root / "pair", "pair", "sentence_pair_classification", seed=1)),
        "score": str(write_task(root / "score", "score", "regression", seed=2)),
    }


def with_changes(data: dict, changes: dict) -> dict:
    """Apply ``section__key=value`` changes (or ``section=value``) to a recipe dict, in place."""
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            data[section][name] = value
        else:
            data[section] = value
    return data


def tiny_recipe(base: str, tasks: dict[str, str], out: Path, steps: int = 6, **training) -> dict:
    return {
        "seed": 0,
        "output_dir": str(out),
        "hypernetwork": {
            "base_model": base,
            "lora_rank": 4,
            "generator_width": 16,
            "task_embedding_dim": 8,
            "condition_dim": 8,
        },
        "training": {
            "max_steps": steps,
            "batch_size": 8,
            "max_length": 32,
            "eval_every": 0,
            "max_eval_examples": 20,
            "log_every": 2,
            **training,
        },
        "tasks": [{"folder": path} for path in tasks.values()],
    }


@pytest.fixture(scope="session")
def trained_run(tiny_bert, task_dirs, tmp_path_factory):
    """One short training run on the tiny model, shared by the tests that read its outputs."""
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    out = tmp_path_factory.mktemp("run") / "out"
    recipe = parse_recipe(tiny_recipe(tiny_bert, task_dirs, out))
    return train(recipe, show_progress=False)


@pytest.fixture(scope="session")
def described_run(tiny_bert, task_dirs, tmp_path_factory):
    """A hypernetwork conditioned on names, descriptions and examples, with a label-semantic head."""
    from hyperadapt.recipe import parse_recipe
    from hyperadapt.training import train

    out = tmp_path_factory.mktemp("described") / "out"
    data = tiny_recipe(tiny_bert, task_dirs, out, steps=6)
    data["hypernetwork"].update(
        conditioning=["name", "description", "examples"],
        head="label_semantic",
        text_encoder=tiny_bert,
        condition_dropout=0.3,
        few_shot_range=[2, 4],
    )
    data["tasks"][0]["descriptions"] = ["Is the review positive?", "Tell good reviews from bad ones."]
    return train(parse_recipe(data), show_progress=False)


def make_tiny_llama(path: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random Llama-architecture causal LM with SmolLM2's tokenizer (and chat template)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hyperadapt.base_model import load_tokenizer

    torch.manual_seed(seed)
    tokenizer = load_tokenizer("smollm2")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # Wide enough embeddings that the (tied) output layer can make some tokens likely at all.
        initializer_range=0.3,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    return str(make_tiny_llama(tmp_path_factory.mktemp("tiny_llama")))


def causal_recipe(base: str, tasks: dict[str, str], out: Path, text_encoder: str, steps: int = 6) -> dict:
    """A tiny recipe for a causal-LM hypernetwork conditioned on descriptions."""
    data = tiny_recipe(base, tasks, out, steps=steps, max_length=96)
    data["hypernetwork"].update(
        model_class="causal_lm", conditioning=["description"], text_encoder=text_encoder
    )
    return data
