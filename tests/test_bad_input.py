"""Bad input through the command line: one clear error line, exit status 2, nothing written.

Every case builds its broken input under ``tmp_path`` and returns the command line and the words
the error must contain. The shared tiny model, task folders and trained run are only read: broken
copies of them are made under ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hyperadapt.cli import main

from .conftest import make_tiny_bert, tiny_recipe, with_changes


@dataclass
class Ctx:
    tmp: Path
    tiny_bert: str
    tasks: dict[str, str]
    run: object  # the session's TrainResult

    @property
    def hypernetwork(self) -> str:
        return str(self.run.hypernetwork_dir)

    @property
    def adapter(self) -> str:
        return str(self.run.adapter_dirs["single"])

    def recipe(self, text: str | None = None, **changes) -> str:
        """A recipe file: the tiny working recipe with ``section__key=value`` changes, or ``text``."""
        data = tiny_recipe(self.tiny_bert, {"single": self.tasks["single"]}, self.tmp / "out", steps=2)
        with_changes(data, changes)
        path = self.tmp / "recipe.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(data))
        return str(path)

    def train(self, *extra: str, **changes) -> list[str]:
        return ["train", self.recipe(**changes), "--no-progress", *extra]

    def task_copy(self, name: str = "single", **meta) -> Path:
        """A copy of a task folder with ``task.json`` fields replaced (``...`` drops one)."""
        folder = self.tmp / f"task_{name}"
        shutil.copytree(self.tasks[name], folder)
        info = json.loads((folder / "task.json").read_text())
        for key, value in meta.items():
            if value is ...:
                info.pop(key, None)
            else:
                info[key] = value
        (folder / "task.json").write_text(json.dumps(info))
        return folder

    def train_on(self, folder: Path) -> list[str]:
        return self.train(tasks=[{"folder": str(folder)}])

    def rows(self, *rows, split: str = "train", raw: str | None = None) -> list[str]:
        folder = self.task_copy()
        text = raw if raw is not None else "".join(json.dumps(r) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(text)
        return self.train_on(folder)

    def csv_task(self, **entry) -> list[str]:
        rows = "".join(
            f"sample {i} is {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n" for i in range(20)
        )
        (self.tmp / "reviews.csv").write_text("review,stars\n" + rows)
        task = {
            "name": "reviews",
            "dataset": "csv",
            "data_files": {"train": str(self.tmp / "reviews.csv")},
            "columns": {"review": "sentence", "stars": "label"},
            "validation_fraction": 0.3,
            "task_type": "sequence_classification",
            "text_fields": ["sentence"],
            "labels": ["neg", "pos"],
            **entry,
        }
        return self.train(tasks=[{k: v for k, v in task.items() if v is not ...}])

    def hypernet_copy(self, change: Callable[[Path], object] | None = None) -> str:
        folder = self.tmp / "hn"
        shutil.copytree(self.hypernetwork, folder)
        if change is not None:
            change(folder)
        return str(folder)

    def generate(self, change=None, task: str = "single", out: Path | None = None) -> list[str]:
        out = out or self.tmp / "adapter"
        return ["generate", self.hypernet_copy(change), "--task", task, "--out", str(out)]

    def adapter_copy(self, change: Callable[[Path], object]) -> str:
        folder = self.tmp / "ad"
        shutil.copytree(self.adapter, folder)
        change(folder)
        return str(folder)


def _edit_json(file: Path, **changes) -> None:
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:100])


def _pickle_weights(folder: Path, name: str, pickle_name: str) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / name), folder / pickle_name)
    (folder / name).unlink()


def _shrink_a_tensor(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    key = next(k for k, v in sorted(state.items()) if v.dim() == 2 and v.shape[1] > 1)
    state[key] = state[key][:, :1].contiguous()
    save_file(state, folder / "model.safetensors")


def _nan_in_a_tensor(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    key = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[key].view(-1)[0] = float("nan")
    save_file(state, folder / "model.safetensors")


def _file(path: Path) -> Path:
    path.write_text("not a folder")
    return path


def _checkpoint_like(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "trainer_state.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    return path


def _full_folder(path: Path, marker: str = "notes.txt") -> Path:
    path.mkdir()
    (path / marker).write_text("mine")
    return path


def _deeper_base(ctx: Ctx) -> str:
    return str(make_tiny_bert(ctx.tmp / "bert3", layers=3))


def _retarget_base(ctx: Ctx) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        _edit_json(folder / "config.json", base_model=_deeper_base(ctx))

    return change


def _no_tokenizer(ctx: Ctx) -> str:
    folder = ctx.tmp / "bare_bert"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(ctx.tiny_bert) / name, folder / name)
    return str(folder)


CASES: list[tuple[str, Callable[[Ctx], list[str]], list[str]]] = [
    # The command line itself.
    ("no command", lambda c: [], ["required", "COMMAND"]),
    ("unknown command", lambda c: ["trian"], ["invalid choice", "'trian'"]),
    ("not a number", lambda c: c.train("--max-steps", "abc"), ["--max-steps", "'abc'"]),
    ("zero steps", lambda c: c.train("--max-steps", "0"), ["--max-steps", "at least 1"]),
    ("unknown option", lambda c: c.train("--fast"), ["unrecognized arguments", "--fast"]),
    ("empty output dir", lambda c: c.train("--output-dir", ""), ["--output-dir", "empty"]),
    ("eval batch size 0", lambda c: ["eval", c.hypernetwork, "--task", "single", "--batch-size", "0"], ["--batch-size"]),
    ("eval unknown split", lambda c: ["eval", c.hypernetwork, "--task", "single", "--split", "dev"], ["--split", "'dev'"]),
    # Recipe files and their keys, types and overrides.
    ("missing recipe", lambda c: ["train", str(c.tmp / "nope.yaml")], ["nope.yaml", "does not exist"]),
    ("recipe is a folder", lambda c: ["train", str(c.tmp)], ["is a folder"]),
    ("malformed yaml", lambda c: ["train", c.recipe("training: {max_steps: 3\n")], ["not valid YAML", "line 2"]),
    ("yaml list", lambda c: ["train", c.recipe("- a\n- b\n"), "training.max_steps=3"], ["mapping", "got list"]),
    ("recipe not utf-8", lambda c: ["train", str(_bytes(c.tmp / "r.yaml", b"seed: \xff\n"))], ["UTF-8"]),
    ("top-level typo", lambda c: c.train(seeds=1), ["'seeds'", "did you mean 'seed'"]),
    ("training typo", lambda c: c.train(training__max_step=3), ["'training.max_step'", "'max_steps'"]),
    ("hypernetwork typo", lambda c: c.train(hypernetwork__lora_rnak=4), ["lora_rnak", "'lora_rank'"]),
    ("task entry typo", lambda c: c.train(tasks=[{"foldr": "x"}]), ["tasks[0].foldr", "'folder'"]),
    ("override typo", lambda c: c.train("training.max_step=3"), ["max_step", "'max_steps'"]),
    ("override section typo", lambda c: c.train("trainig.max_steps=3"), ["'trainig'", "'training'"]),
    ("override without =", lambda c: c.train("training.max_steps"), ["section.key=value"]),
    ("steps not an integer", lambda c: c.train(training__max_steps="many"), ["training.max_steps", "integer"]),
    ("dropout not a number", lambda c: c.train(hypernetwork__dropout="x"), ["hypernetwork.dropout", "number"]),
    ("alpha is a bool", lambda c: c.train(hypernetwork__lora_alpha=True), ["lora_alpha", "number"]),
    ("flag not a bool", lambda c: c.train(export_adapters="no"), ["export_adapters", "true or false"]),
    ("targets not a list", lambda c: c.train(hypernetwork__target_modules="query"), ["target_modules", "list"]),
    ("output_dir null", lambda c: c.train(output_dir=None), ["output_dir", "got None"]),
    ("unknown scheduler", lambda c: c.train(training__lr_scheduler="cosin"), ["lr_scheduler", "'cosine'"]),
    ("warmup out of range", lambda c: c.train(training__warmup_ratio=2), ["warmup_ratio"]),
    ("no tasks", lambda c: c.train(tasks=[]), ["tasks must be a non-empty list"]),
    ("two sources", lambda c: c.train(tasks=[{"builtin": "rt_sentiment", "folder": "x"}]), ["exactly one of"]),
    ("yaml booleans as labels", lambda c: c.csv_task(labels=[False, True]), ["labels", "quote the value"]),
    # Tasks: built-in names, folders and their files.
    ("unknown builtin", lambda c: c.train(tasks=["rt_sentimnt"]), ["'rt_sentimnt'", "'rt_sentiment'"]),
    ("builtin columns", lambda c: c.train(tasks=[{"builtin": "rt_sentiment", "text_fields": ["x"]}]), ["cannot be changed"]),
    ("missing task folder", lambda c: c.train(tasks=[{"folder": str(c.tmp / "gone")}]), ["gone", "does not exist"]),
    ("dataset key on a folder", lambda c: c.train(tasks=[{"folder": c.tasks["single"], "columns": {"a": "b"}}]), ["columns does not apply"]),
    ("same task twice", lambda c: c.train(tasks=[{"folder": c.tasks["single"]}] * 2), ["'single'", "appear twice"]),
    ("task.json broken", lambda c: c.train_on(_write(c.task_copy() / "task.json", "{oops")), ["task.json", "not valid JSON"]),
    ("task.json list", lambda c: c.train_on(_write(c.task_copy() / "task.json", "[1]")), ["task.json", "JSON object"]),
    ("no task_type", lambda c: c.train_on(c.task_copy(task_type=...)), ["task.json", "has no task_type"]),
    ("task_type typo", lambda c: c.train_on(c.task_copy(task_type="sequence_clasification")), ["did you mean 'sequence_classification'"]),
    ("token task with sentences", lambda c: c.train_on(c.task_copy(task_type="token_classification")), ["column 'sentence' must be a non-empty list of words", "train row 0"]),
    ("labels not names", lambda c: c.train_on(c.task_copy(labels=[0, 1])), ["labels", "label names"]),
    ("duplicate labels", lambda c: c.train_on(c.task_copy(labels=["a", "a"])), ["labels", "distinct"]),
    ("text_fields a string", lambda c: c.train_on(c.task_copy(text_fields="sentence")), ["text_fields", "list"]),
    ("name with a slash", lambda c: c.train_on(c.task_copy(task_id="../escape")), ["task name '../escape'"]),
    ("missing text column", lambda c: c.rows({"text": "a", "label": 0}), ["missing text column 'sentence'", "train row 0"]),
    ("missing label column", lambda c: c.rows({"sentence": "a"}), ["missing label column 'label'"]),
    ("label out of range", lambda c: c.rows({"sentence": "a", "label": 2}), ["label 2 is out of range", "0..1"]),
    ("unknown label name", lambda c: c.rows({"sentence": "a", "label": "meh"}), ["'meh'", "labels"]),
    ("empty text", lambda c: c.rows({"sentence": " ", "label": 0}), ["'sentence' is empty"]),
    ("text not a string", lambda c: c.rows({"sentence": 5, "label": 0}), ["holds int"]),
    ("bad jsonl line", lambda c: c.rows(raw='{"sentence": "a", "label": 0}\n{oops\n'), ["train.jsonl:2", "not valid JSON"]),
    ("jsonl row not an object", lambda c: c.rows(raw="[1, 2]\n"), ["expected an object"]),
    ("empty train split", lambda c: c.rows(raw=""), ["no training examples"]),
    ("no validation split", lambda c: c.train_on(_remove(c.task_copy() / "validation.jsonl")), ["no validation examples"]),
    ("regression label infinite", lambda c: c.train_on(_write(c.task_copy("score") / "train.jsonl", '{"sentence": "a", "label": Infinity}\n')), ["not a finite number"]),
    ("csv column missing", lambda c: c.csv_task(columns={"text": "sentence", "stars": "label"}), ["columns ['text']", "'review'"]),
    ("csv text column unmapped", lambda c: c.csv_task(columns=...), ["missing text column 'sentence'", "review"]),
    ("csv without data_files", lambda c: c.csv_task(data_files=...), ["needs data_files"]),
    ("csv file missing", lambda c: c.csv_task(data_files={"train": str(c.tmp / "gone.csv")}), ["found no data", "gone.csv"]),
    ("csv label name unknown", lambda c: c.csv_task(labels=["bad", "good"]), ["'neg'", "not one of the task's labels"]),
    ("validation fraction 1.5", lambda c: c.csv_task(validation_fraction=1.5), ["validation_fraction", "between 0 and 1"]),
    ("task without description", lambda c: c.train(hypernetwork__conditioning=["description"], hypernetwork__head="label_semantic", hypernetwork__text_encoder=c.tiny_bert, tasks=[{"folder": str(c.task_copy(description=" "))}]), ["['single'] have no description", "drop 'description'"]),
    ("held_out also trained", lambda c: c.train(hypernetwork__head="label_semantic", held_out=[{"folder": c.tasks["single"]}]), ["['single'] are both training tasks and held_out"]),
    # The base model.
    ("base model missing", lambda c: c.train(hypernetwork__base_model=str(c.tmp / "no_model")), ["no_model", "does not exist"]),
    ("base without tokenizer", lambda c: c.train(hypernetwork__base_model=_no_tokenizer(c)), ["no tokenizer files"]),
    ("max_length over positions", lambda c: c.train(training__max_length=4096), ["training.max_length=4096", "128"]),
    ("max_length too short", lambda c: c.train(training__max_length=2), ["training.max_length must be 8 or more"]),
    ("unknown target module", lambda c: c.train(hypernetwork__target_modules=["qkv"]), ["'qkv'", "query"]),
    # Output folders.
    ("output exists", lambda c: c.train("--output-dir", str(_full_folder(c.tmp / "taken"))), ["already exists", "--overwrite"]),
    ("overwrite other files", lambda c: c.train("--output-dir", str(_full_folder(c.tmp / "taken")), "--overwrite"), ["will not delete"]),
    ("output is a file", lambda c: c.train("--output-dir", str(_file(c.tmp / "f"))), ["is a file"]),
    ("output under a file", lambda c: c.train("--output-dir", str(_file(c.tmp / "f") / "run")), ["is a file"]),
    # Hypernetwork folders and checkpoints.
    ("hypernetwork missing", lambda c: ["generate", str(c.tmp / "gone"), "--task", "single", "--out", str(c.tmp / "a")], ["gone", "does not exist"]),
    ("run folder given", lambda c: ["generate", str(c.run.output_dir), "--task", "single", "--out", str(c.tmp / "a")], ["hypernetwork/ subfolder"]),
    ("adapter given", lambda c: ["generate", c.adapter, "--task", "single", "--out", str(c.tmp / "a")], ["exported peft adapter"]),
    ("training checkpoint given", lambda c: ["generate", str(_checkpoint_like(c.tmp / "ckpt")), "--task", "single", "--out", str(c.tmp / "a")], ["training checkpoint", "--resume"]),
    ("unknown task", lambda c: c.generate(task="singel"), ["unknown task 'singel'", "Did you mean 'single'"]),
    ("config.json broken", lambda c: c.generate(lambda f: _write(f / "config.json", "{oops")), ["config.json", "not valid JSON"]),
    ("config.json list", lambda c: c.generate(lambda f: _write(f / "config.json", "[]")), ["config.json", "JSON object"]),
    ("config.json wrong type", lambda c: c.generate(lambda f: _edit_json(f / "config.json", lora_rank="x")), ["lora_rank"]),
    ("weights truncated", lambda c: c.generate(lambda f: _truncate(f / "model.safetensors")), ["corrupt or truncated"]),
    ("weights missing", lambda c: c.generate(lambda f: (f / "model.safetensors").unlink()), ["model.safetensors is missing"]),
    ("weights pickled", lambda c: c.generate(lambda f: _pickle_weights(f, "model.safetensors", "pytorch_model.bin")), ["pickled", "safetensors only"]),
    ("weights of other shapes", lambda c: c.generate(_shrink_a_tensor), ["do not match config.json"]),
    ("weights with NaN", lambda c: c.generate(_nan_in_a_tensor), ["NaN or infinite values", "damaged"]),
    ("wrong base for hypernetwork", lambda c: c.generate(_retarget_base(c)), ["trained for base model", "3 layers"]),
    ("adapter folder exists", lambda c: c.generate(out=_full_folder(c.tmp / "taken")), ["already exists", "--out"]),
    ("overwrite non-adapter", lambda c: [*c.generate(out=_full_folder(c.tmp / "taken")), "--overwrite"], ["will not delete"]),
    ("adapter under a file", lambda c: c.generate(out=_file(c.tmp / "f") / "a"), ["is a file"]),
    # Scoring.
    ("eval unknown task", lambda c: ["eval", c.hypernetwork, "--task", "nope"], ["unknown task 'nope'"]),
    ("eval wrong base", lambda c: ["eval", c.hypernetwork, "--task", "single", "--base-model", _deeper_base(c)], ["trained for base model"]),
    ("eval other labels", lambda c: ["eval", c.hypernetwork, "--task", str(c.task_copy(labels=["a", "b", "c"]))], ["'single'", "labels"]),
    ("eval missing split", lambda c: ["eval", c.hypernetwork, "--task", str(_remove(c.task_copy() / "test.jsonl")), "--split", "test"], ["no 'test' examples"]),
    ("eval shots ignored", lambda c: ["eval", c.hypernetwork, "--task", "single", "--shots", "4"], ["not on examples", "--shots"]),
    ("eval description ignored", lambda c: ["eval", c.hypernetwork, "--task", "single", "--description", "x"], ["--description would be ignored"]),
    ("negative shots", lambda c: ["eval", c.hypernetwork, "--task", "single", "--shots", "-1"], ["--shots", "0 or more"]),
    ("generate examples ignored", lambda c: [*c.generate(), "--examples", str(_bytes(c.tmp / "ex.jsonl", b'{"sentence": "a", "label": 1}'))], ["--examples would be ignored"]),
    ("eval too long", lambda c: ["eval", c.hypernetwork, "--task", "single", "--max-length", "4096"], ["--max-length=4096"]),
    ("eval too short", lambda c: ["eval", c.hypernetwork, "--task", "single", "--max-length", "3"], ["--max-length=3 is too short", "8 or more"]),
    ("eval pickled adapter", lambda c: ["eval", c.adapter_copy(lambda f: _pickle_weights(f, "adapter_model.safetensors", "adapter_model.bin")), "--task", c.tasks["single"]], ["no adapter_model.safetensors", "pickled"]),
    ("eval adapter truncated", lambda c: ["eval", c.adapter_copy(lambda f: _truncate(f / "adapter_model.safetensors")), "--task", c.tasks["single"]], ["adapter_model.safetensors is damaged or truncated", "write it again"]),
    ("eval adapter info broken", lambda c: ["eval", c.adapter_copy(lambda f: _write(f / "hyperadapt_task.json", "{")), "--task", c.tasks["single"]], ["hyperadapt_task.json", "not valid JSON"]),
    ("eval adapter other task", lambda c: ["eval", c.adapter, "--task", c.tasks["score"]], ["'score'"]),
]  # fmt: skip


def _write(file: Path, text: str) -> Path:
    """Write a file; return its folder (the task folder, for a task's files)."""
    file.write_text(text, encoding="utf-8")
    return file.parent


def _remove(file: Path) -> Path:
    file.unlink()
    return file.parent


def _bytes(file: Path, data: bytes) -> Path:
    file.write_bytes(data)
    return file


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("make_argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_error_line_status_2_and_writes_nothing(
    make_argv, words, tiny_bert, task_dirs, trained_run, tmp_path, capsys
):
    ctx = Ctx(tmp_path, tiny_bert, task_dirs, trained_run)
    argv = make_argv(ctx)
    before = _snapshot(tmp_path)
    run_before = _snapshot(trained_run.output_dir)
    code = main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("hyperadapt: error:")]
    assert code == 2, captured.err
    assert len(errors) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    for word in words:
        assert word in errors[0]
    assert _snapshot(tmp_path) == before  # no output folder, no temporary folder left behind
    assert _snapshot(trained_run.output_dir) == run_before


def test_help_exits_0(capsys):
    assert main(["train", "--help"]) == 0
    assert "recipe" in capsys.readouterr().out


def test_a_run_that_fails_while_writing_leaves_the_old_run_untouched(
    tiny_bert, task_dirs, tmp_path, monkeypatch, capsys
):
    """Outputs go to a temporary folder that is renamed into place only once complete."""
    import hyperadapt.export as export
    from hyperadapt.errors import HyperAdaptError

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # a previous run, which --overwrite may replace
    (out / "hypernetwork").mkdir()

    def fail(*args, **kwargs):
        raise HyperAdaptError("disk full (simulated)")

    monkeypatch.setattr(export, "export_adapter", fail)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, {"single": task_dirs["single"]}, out, steps=1)))
    code = main(["train", str(recipe), "--no-progress", "--overwrite"])
    assert code == 2
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml", "run"]
    assert sorted(p.name for p in out.iterdir()) == ["hypernetwork", "metrics.json"]
    assert (out / "metrics.json").read_text() == "{}"


def test_overwrite_replaces_a_previous_run(tiny_bert, task_dirs, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    (out / "stale.txt").write_text("old")
    recipe = tmp_path / "r.yaml"
    data = tiny_recipe(tiny_bert, {"single": task_dirs["single"]}, out, steps=1)
    recipe.write_text(yaml.safe_dump({**data, "export_adapters": False}))
    assert main(["train", str(recipe), "--no-progress", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["hypernetwork", "metrics.json"]
    assert json.loads((out / "metrics.json").read_text())["best_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml", "run"]
