"""The ``hyperadapt`` command line: train, generate, eval, tasks, push."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from .errors import HyperAdaptError


class _UsageError(Exception):
    """A bad command line, reported like any other user error."""


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, unless it has none or its help already says what it is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``hyperadapt: error:`` line (no usage block)."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{message} (see {self.prog} --help)")


def _int_at_least(low: int):
    """An argparse type: a whole number of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            bound = "0 or more" if low == 0 else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_count = _int_at_least(0)


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _one_line(message: str) -> str:
    """Errors from other libraries can span lines; the command line prints exactly one."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    level = logging.DEBUG if verbose else logging.INFO
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch, the main process reports
        level = logging.WARNING
    logging.getLogger("hyperadapt").setLevel(level)
    # Library chatter that says nothing to a hyperadapt user (frozen heads, offline notes).
    warnings.filterwarnings("ignore", module="peft")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _cmd_train(args: argparse.Namespace) -> int:
    from .recipe import load_recipe
    from .training import train

    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"training.max_steps={args.max_steps}")
    recipe = load_recipe(args.recipe, overrides)
    result = train(
        recipe,
        output_dir=args.output_dir,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
        resume=args.resume,
    )
    if result.process_index != 0:  # under accelerate launch, the main process reports
        return 0
    print(f"\nbest validation (step {result.best_step}, {result.seconds:.0f} s):")
    print(f"{'task':<40} {'metric':<10} {'value':>7} {'majority':>9}")
    for name, metrics in result.metrics.items():
        main = result.main_metrics[name]
        baseline = result.baselines.get(name)
        base_text = f"{baseline:9.3f}" if baseline is not None else f"{'-':>9}"
        kind = "zero-shot" if metrics.get("zero_shot") else "held out" if metrics.get("held_out") else ""
        label = f"{name} ({kind})" if kind else name
        print(f"{label:<40} {main:<10} {metrics[main]:7.3f} {base_text}")
    print(f"\nhypernetwork: {result.hypernetwork_dir}")
    for name, path in result.adapter_dirs.items():
        print(f"adapter {name}: {path}")
    return 0


def _new_task_by_name(hypernet, name: str):
    """A task the hypernetwork never trained on, named like `hyperadapt eval` names one: a task
    folder, a built-in task, or a held_out entry of its recipe; its description and labels make it."""
    from .runtime import resolve_task

    try:
        return resolve_task(name, getattr(hypernet, "source_dir", None), needs=()).spec
    except HyperAdaptError:
        if Path(name).exists():  # a folder or entry file that is there but broken: say what is wrong
            raise
    try:
        hypernet.spec(name)
    except HyperAdaptError as err:
        raise HyperAdaptError(
            f"{err} For a task it never saw, give a task folder to --task, or --description '...' and "
            "--labels '...'"
        ) from None


def _cmd_generate(args: argparse.Namespace) -> int:
    from .cards import known_metrics
    from .export import ADAPTER_MARKERS, check_output_folder, export_adapter
    from .files import atomic_dir
    from .hub import check_push_target, push_adapter
    from .runtime import Runtime, load_hypernetwork, new_task_spec

    if not args.task and args.description is None:
        raise HyperAdaptError(
            "say which adapter to generate: --task NAME, or --description '...' --labels '...'"
        )
    check_output_folder(Path(args.out), args.overwrite, "--out", ADAPTER_MARKERS, "an exported adapter")
    if args.push_to_hub:
        check_push_target(args.push_to_hub)  # a bad repo id fails before anything is generated
    hypernet = load_hypernetwork(args.hypernetwork, revision=args.revision)
    if args.examples:
        _check_conditioned_on(hypernet, "examples", "--examples")
    if args.language is not None:
        _check_language(hypernet, args.language)
    if args.task and hypernet.knows(args.task):
        if not args.language and args.task not in hypernet.task_index:
            languages = sorted({s.language for s in hypernet.task_specs if s.key == args.task})
            if len(languages) > 1:
                raise HyperAdaptError(
                    f"{args.task!r} is a group of tasks in {', '.join(languages)}; say which language with "
                    f"--language (any of {', '.join(hypernet.config.languages)})"
                )
        spec = hypernet.spec_in(args.task, args.language)
        if args.labels:
            raise HyperAdaptError(f"task {args.task!r} is a training task with its own labels; drop --labels")
        if args.description is not None:  # a new wording of a known task (a causal LM's prompt states it too)
            _check_conditioned_on(hypernet, "description", "--description")
            spec = dataclasses.replace(spec, description=args.description.strip())
    elif args.description is not None:
        if args.labels is None and not hypernet.config.is_causal_lm:
            raise HyperAdaptError(
                "a new task needs its labels: --labels 'name: what it means; name2: ...' (free-text answers "
                "need a causal_lm hypernetwork)"
            )
        if args.labels is not None and not args.labels.strip() and hypernet.config.is_causal_lm:
            raise HyperAdaptError(
                "--labels is empty; give at least two labels, or leave --labels out for free-text answers"
            )
        if args.name and hypernet.knows(args.name):
            raise HyperAdaptError(
                f"--name {args.name!r} is a training task of this hypernetwork; name the new task differently "
                f"(or use --task {args.name} without --labels for the training task)"
            )
        fields = [f.strip() for f in args.text_fields.split(",")] if args.text_fields else None
        # Without --labels a causal LM's new task has free-text answers (text_generation).
        spec = new_task_spec(args.task or args.name or "new_task", args.description, args.labels, fields)
        if args.language:
            spec = dataclasses.replace(spec, language=args.language)
    else:
        spec = _new_task_by_name(hypernet, args.task)
    examples = _read_examples(args.examples, spec) if args.examples else None
    runtime = Runtime(hypernet)
    condition = runtime.condition(
        spec, description=args.description, examples=examples, language=args.language
    )
    # Written to a temporary folder, pushed from there, and renamed into place only once pushed:
    # a failed push leaves no --out folder behind.
    with atomic_dir(args.out) as staged:
        export_adapter(
            hypernet,
            spec,
            staged,
            condition=condition,
            overwrite=True,  # the empty staging folder; --out itself was checked above
            metrics=known_metrics(hypernet, spec.name) if spec.name in hypernet.task_index else None,
            hypernetwork_ref=args.hypernetwork + (f"@{args.revision}" if args.revision else ""),
        )
        url = (
            push_adapter(staged, args.push_to_hub, private=args.private or None) if args.push_to_hub else None
        )
    print(Path(args.out))
    if url:
        print(url)
    return 0


def _check_task_path(task: str) -> None:
    if ("/" in task or task.endswith((".yaml", ".yml", ".json"))) and not Path(task).exists():
        raise HyperAdaptError(f"--task {task}: no such task folder or file")


def _read_examples(path: str, spec) -> list[dict]:
    """Labelled examples for a few-shot condition, from a JSONL file (labels as names or indices)."""
    from .data import normalise_examples, read_jsonl

    file = Path(path)
    if not file.is_file():
        raise HyperAdaptError(f"--examples {path}: no such file")
    rows = normalise_examples(spec, read_jsonl(file), "examples", str(file))
    if not rows:
        raise HyperAdaptError(f"--examples {path} holds no examples")
    return rows


def _check_conditioned_on(hypernet, part: str, flag: str) -> None:
    """Refuse a flag the hypernetwork would silently ignore."""
    parts = hypernet.config.conditioning
    if part not in parts:
        raise HyperAdaptError(
            f"this hypernetwork is conditioned on {parts}, not on {part}, so {flag} would be ignored; drop it"
        )


def _check_language(hypernet, code: str) -> None:
    """Refuse --language for a hypernetwork without language conditioning, or an unknown code."""
    from .conditioning import unknown_language

    _check_conditioned_on(hypernet, "language", "--language")
    if code not in hypernet.config.languages:
        raise HyperAdaptError(unknown_language(code, hypernet.config.languages))


def _cmd_eval(args: argparse.Namespace) -> int:
    from .base_model import check_inputs_fit
    from .bottleneck import BOTTLENECK_CONFIG
    from .data import Task
    from .evaluation import evaluate_hypernetwork
    from .runtime import Runtime, load_hypernetwork, resolve_task

    path = Path(args.model)
    common = {
        "split": args.split,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "max_examples": args.max_examples,
    }
    _check_task_path(args.task)
    if (path / "adapter_config.json").is_file() or (path / BOTTLENECK_CONFIG).is_file():
        print(json.dumps(_eval_adapter(path, args, common), indent=2))
        return 0
    hypernet = load_hypernetwork(args.model, revision=args.revision)
    if args.description is not None:
        _check_conditioned_on(hypernet, "description", "--description")
    if args.shots:
        _check_conditioned_on(hypernet, "examples", "--shots")
    if args.language is not None:
        _check_language(hypernet, args.language)
    if args.group and not hypernet.knows(args.group):
        hypernet.spec(args.group)  # the error lists the known tasks and groups
    if args.group and args.group not in hypernet.key_index:
        raise HyperAdaptError(
            f"--group {args.group!r} is a training task of group {hypernet.spec(args.group).key!r}; "
            f"use --group {hypernet.spec(args.group).key}"
        )
    needs = (args.split, "train") if args.shots else (args.split,)
    source = path if path.is_dir() else getattr(hypernet, "source_dir", None)
    try:
        task = resolve_task(args.task, source, needs)
    except HyperAdaptError:
        if args.task in hypernet.task_index or Path(args.task).exists():
            raise
        hypernet.spec(args.task)  # an unknown name: the error lists the known tasks
        raise
    if args.group:
        task = Task(dataclasses.replace(task.spec, group=args.group), task.splits)
    seen = task.name in hypernet.task_index
    if seen:
        spec = hypernet.spec(task.name)
    elif task.spec.key in hypernet.key_index:  # a known task (group) in another language: its head
        group = hypernet.spec_in(task.spec.key, args.language or task.spec.language)
        spec = dataclasses.replace(group, name=task.name, language=args.language or task.spec.language)
    else:
        spec = task.spec
    if args.description is not None:  # a causal LM's prompt states it too
        spec = dataclasses.replace(spec, description=args.description.strip())
    task = _as(task, spec)
    runtime = Runtime(hypernet, base_model=args.base_model)
    check_inputs_fit(runtime.base_model, runtime.tokenizer, args.max_length, "--max-length")
    if hypernet.config.is_causal_lm:  # the prompt must fit, and the labels be answerable
        from .causal_lm import TextToText

        TextToText(runtime.tokenizer, task.spec, args.max_length, "--max-length")
    examples = None
    if args.shots:
        import numpy as np

        available = len(task.splits["train"])
        if args.shots > available:
            raise HyperAdaptError(
                f"--shots {args.shots} is more than the {available} training examples of task {task.name!r}; "
                f"use --shots {available} or fewer"
            )
        order = np.random.default_rng(args.seed).permutation(available)[: args.shots]
        examples = [task.splits["train"][i] for i in order]
    condition = runtime.condition(
        spec, description=args.description, examples=examples, language=args.language
    )
    metrics = evaluate_hypernetwork(hypernet, runtime.adapted, runtime.tokenizer, task, condition, **common)
    if seen:
        mode = "seen" if condition.language in (None, spec.language) else f"seen, in {condition.language}"
    elif spec.key in hypernet.key_index:
        mode = f"task {spec.key} in {condition.language or spec.language}"
    else:
        mode = "zero-shot" if not examples else f"{len(examples)}-shot"
    print(json.dumps({"task": task.name, "split": args.split, "mode": mode, **metrics}, indent=2))
    return 0


def _as(task, spec):
    """The data of ``task`` expressed under the model's own spec of it (fields, label order)."""
    from .data import align_task

    return align_task(task, spec)


def _eval_adapter(path: Path, args: argparse.Namespace, common: dict) -> dict:
    import torch
    from peft import PeftModel
    from safetensors import SafetensorError

    from .base_model import (
        check_inputs_fit,
        load_causal_lm,
        load_sequence_classifier,
        load_token_classifier,
        load_tokenizer,
    )
    from .bottleneck import BOTTLENECK_CONFIG, from_pretrained
    from .evaluation import evaluate_logits_fn
    from .export import ADAPTER_CONFIG, TASK_FILE
    from .runtime import resolve_task

    given = [
        flag
        for flag, value in (
            ("--description", args.description),
            ("--shots", args.shots),
            ("--language", args.language),
            ("--group", args.group),
            ("--revision", args.revision),
        )
        if value
    ]
    if given:
        raise HyperAdaptError(
            f"{path} is an exported adapter, already generated for one task, so {', '.join(given)} would be "
            "ignored; drop it, or pass the hypernetwork folder instead to generate anew"
        )
    bottleneck = (path / BOTTLENECK_CONFIG).is_file()
    if not (path / "adapter_model.safetensors").is_file():
        pickled = (path / "adapter_model.bin").is_file()
        raise HyperAdaptError(
            f"adapter {path} has no adapter_model.safetensors"
            + (" (only a pickled adapter_model.bin, which hyperadapt does not load)" if pickled else "")
            + "; write it again with hyperadapt generate"
        )
    info = _read_json(path / TASK_FILE) if (path / TASK_FILE).is_file() else {}
    base_name = (
        args.base_model
        or info.get("base_model")
        or _read_json(path / (BOTTLENECK_CONFIG if bottleneck else ADAPTER_CONFIG)).get(
            "base_model" if bottleneck else "base_model_name_or_path"
        )
    )
    if not base_name or not isinstance(base_name, str):
        raise HyperAdaptError(f"adapter {path} does not name its base model (as text); pass --base-model")
    task = resolve_task(args.task, needs=(args.split,))
    scored = task.name  # the data's task; the adapter may have been generated under another name
    if info.get("task"):
        from .data import TaskSpec

        try:
            generated_for = TaskSpec.from_dict(info["task"])
        except (AttributeError, TypeError, ValueError) as err:
            raise HyperAdaptError(
                f"{path / TASK_FILE}: its task is damaged ({err}); write the folder again"
            ) from None
        task = _as(task, generated_for)
    causal = (
        not bottleneck and _read_json(path / ADAPTER_CONFIG).get("task_type") == "CAUSAL_LM"
    ) or info.get("model_class") == "causal_lm"
    if causal:
        base = load_causal_lm(base_name)
    else:
        loader = load_token_classifier if task.spec.is_token_level else load_sequence_classifier
        base = loader(base_name, num_labels=task.spec.num_outputs)
    try:
        model = (
            from_pretrained(base, path) if bottleneck else PeftModel.from_pretrained(base, str(path)).eval()
        )
    except SafetensorError as err:
        raise HyperAdaptError(
            f"{path / 'adapter_model.safetensors'} is damaged or truncated ({err}); write it again with "
            "hyperadapt generate"
        ) from None
    except (RuntimeError, ValueError, OSError) as err:
        first = " ".join(str(err).strip().splitlines()[:2])  # a shape mismatch lists every tensor
        raise HyperAdaptError(
            f"cannot load adapter {path} on base {base_name!r} ({first}); pass the base model it was "
            "generated for with --base-model"
        ) from None
    if not bottleneck:
        _check_every_slot_loaded(model, path, base_name)
    tokenizer = load_tokenizer(base_name)
    check_inputs_fit(base, tokenizer, args.max_length, "--max-length")
    with torch.no_grad():
        if causal:  # the labels' words ranked by their likelihood after the prompt
            from .causal_lm import (
                TextToText,
                evaluate_choices,
                evaluate_generation,
                peft_hidden_states,
                peft_log_likelihood,
            )

            TextToText(tokenizer, task.spec, args.max_length, "--max-length")
            if task.spec.is_generation:
                metrics = evaluate_generation(*peft_hidden_states(model), tokenizer, task, **common)
            else:
                metrics = evaluate_choices(peft_log_likelihood(model), tokenizer, task, **common)
        else:
            metrics = evaluate_logits_fn(lambda inputs: model(**inputs).logits, tokenizer, task, **common)
    return {"task": scored, "split": common["split"], "mode": "exported adapter", **metrics}


def _check_every_slot_loaded(model, path: Path, base_name: str) -> None:
    """Refuse a base with more adapted modules than the adapter has weights for (peft leaves the
    extra ones at their initial values and only warns): a deeper model of the same family."""
    from safetensors import safe_open

    with safe_open(str(path / "adapter_model.safetensors"), framework="pt") as saved:
        stored = {key for key in saved.keys() if ".lora_" in key or ".ia3_" in key}  # noqa: SIM118
    slots = {
        name
        for name, _ in model.named_parameters()
        if (".lora_" in name or ".ia3_" in name) and not name.endswith(".lora_magnitude_vector")
    }
    if len(slots) != len(stored):
        raise HyperAdaptError(
            f"adapter {path} holds weights for {len(stored)} adapter tensors, but base {base_name!r} has "
            f"{len(slots)} adapted slots (another depth or layout); pass the base model it was generated for "
            "with --base-model"
        )


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise HyperAdaptError(f"{file} is not valid JSON ({err}); write the folder again") from None
    if not isinstance(data, dict):
        raise HyperAdaptError(f"{file} is not a JSON object; write the folder again")
    return data


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_folder

    url = push_folder(
        args.folder,
        args.repo_id,
        private=args.private or None,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(url)
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from .builtin_tasks import builtin_task_names, load_builtin_task

    logging.getLogger("hyperadapt.builtin_tasks").setLevel(logging.WARNING)  # the table says it all
    print(f"{'task':<18} {'type':<30} {'lang':<5} {'labels':>6} {'train':>6} {'valid':>6} {'test':>6}")
    for name in builtin_task_names():
        task = load_builtin_task(name)
        sizes = task.sizes()
        print(
            f"{name:<18} {task.spec.task_type:<30} {task.spec.language:<5} {task.spec.num_outputs:>6} "
            f"{sizes['train']:>6} {sizes['validation']:>6} {sizes['test']:>6}"
        )
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hyperadapt")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hyperadapt",
        description="Train a hypernetwork that generates LoRA adapters, and export what it generates.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = verbs.add_parser(
        "train",
        help="train a hypernetwork from a recipe",
        description="Train a hypernetwork from a YAML recipe.",
    )
    p.add_argument("recipe", type=_text, help="the recipe file, e.g. recipes/quickstart.yaml")
    p.add_argument("--output-dir", type=_text, help="where to write (default: the recipe's output_dir)")
    p.add_argument("--max-steps", type=_positive_int, help="override training.max_steps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        type=_text,
        metavar="latest|PATH",
        help="continue a run from its last checkpoint (latest, the default) or from a checkpoint folder",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="key=value",
        help="recipe overrides such as training.learning_rate=5e-4 hypernetwork.lora_rank=4",
    )
    p.set_defaults(func=_cmd_train)

    p = verbs.add_parser(
        "generate",
        help="write a task's generated adapter as a peft folder",
        description="Generate a task's adapter (LoRA, (IA)^3 or bottleneck, as the hypernetwork was trained) and "
        "write it as a folder that loads with plain peft (or hyperadapt.from_pretrained for bottleneck adapters).",
    )
    p.add_argument("hypernetwork", type=_text, help="a hypernetwork folder (RUN/hypernetwork) or Hub repo id")
    p.add_argument(
        "--task",
        help="a task the hypernetwork was trained on; or one it never saw, generated from its description and "
        "labels: a task folder, a built-in task or a held_out task of its recipe; or the name of a new task "
        "given by --description and --labels",
    )
    p.add_argument("--description", help="what the task is, in plain words (a new task, or a new wording)")
    p.add_argument(
        "--labels",
        help="a new task's labels: 'name: what it means; name2: what it means' (a causal LM's new task without "
        "--labels has free-text answers)",
    )
    p.add_argument("--examples", help="a JSONL file of labelled examples for a few-shot condition")
    p.add_argument("--name", type=_text, help="the name of a new task (default: --task or new_task)")
    p.add_argument(
        "--language",
        type=_text,
        help="generate the task's adapter for this language code (a hypernetwork conditioned on languages; "
        "any language it was trained on, with this task or others)",
    )
    p.add_argument(
        "--text-fields",
        type=_text,
        help="input fields of a new task, e.g. sentence1,sentence2 (default: sentence)",
    )
    p.add_argument("--out", required=True, type=_text, help="the adapter folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    p.add_argument("--revision", type=_text, help="branch, tag or commit of a hypernetwork on the Hub")
    p.add_argument(
        "--push-to-hub", metavar="REPO_ID", type=_text, help="also push the adapter to this Hub repo"
    )
    p.add_argument("--private", action="store_true", help="create the --push-to-hub repo private")
    p.set_defaults(func=_cmd_generate)

    p = verbs.add_parser(
        "eval",
        formatter_class=_DefaultsFormatter,
        help="score a hypernetwork or an exported adapter on a task",
        description="Score a hypernetwork or an exported peft adapter; prints JSON metrics.",
    )
    p.add_argument(
        "model", type=_text, help="a hypernetwork folder or repo id, or an exported adapter folder"
    )
    p.add_argument(
        "--task",
        required=True,
        type=_text,
        help="a task name (built-in or from the recipe), a task folder, or a YAML file with one task entry; "
        "a task the hypernetwork never saw is scored zero-shot (or few-shot with --shots)",
    )
    p.add_argument(
        "--split", default="validation", choices=["train", "validation", "test"], help="the split to score"
    )
    p.add_argument("--batch-size", type=_positive_int, default=64, help="examples per forward pass")
    p.add_argument(
        "--max-length", type=_positive_int, default=128, help="tokens per input; longer ones are truncated"
    )
    p.add_argument("--max-examples", type=_positive_int, default=None, help="score only the first N examples")
    p.add_argument(
        "--base-model",
        type=_text,
        help="the base model (default: the one the hypernetwork or adapter names; it must be the same model)",
    )
    p.add_argument("--description", help="generate from this description instead of the task's own")
    p.add_argument(
        "--shots",
        type=_count,
        default=0,
        help="condition on K labelled examples drawn from the task's train split as well",
    )
    p.add_argument("--seed", type=_count, default=0, help="seed for drawing the --shots examples")
    p.add_argument(
        "--language",
        type=_text,
        help="generate the adapter for this language code (default: the task's own language, en if its "
        "folder names none)",
    )
    p.add_argument(
        "--group",
        type=_text,
        help="score the task as an instance of this training task group (its name embedding and head), "
        "e.g. sentiment in a language the group was never trained in",
    )
    p.add_argument("--revision", type=_text, help="branch, tag or commit of a hypernetwork on the Hub")
    p.set_defaults(func=_cmd_eval)

    p = verbs.add_parser(
        "tasks",
        help="list the built-in tasks with their sizes",
        description="List the built-in tasks (corpora shipped in PyPI packages).",
    )
    p.set_defaults(func=_cmd_tasks)

    p = verbs.add_parser(
        "push",
        help="push a hypernetwork (or an exported adapter) to the Hub",
        description="Push a saved hypernetwork folder, with its model card, or an exported peft adapter "
        "folder to a Hub repository (created if needed). Uses your Hub login or HF_TOKEN.",
    )
    p.add_argument("folder", help="a hypernetwork folder (RUN/hypernetwork) or an exported adapter folder")
    p.add_argument("repo_id", help="the Hub repository, namespace/name")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument(
        "--revision",
        "--branch",
        dest="revision",
        type=_text,
        help="the branch to push to (created if missing)",
    )
    p.add_argument("--commit-message", help="the commit's summary")
    p.set_defaults(func=_cmd_push)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # key=value overrides may come after options (train RECIPE --max-steps 5 training.lr=1e-4).
        if extra:
            if args.command == "train" and not any(e.startswith("-") for e in extra):
                args.overrides = [*args.overrides, *extra]
            else:
                prog = f"{parser.prog} {args.command}"
                raise _UsageError(f"unrecognized arguments: {' '.join(extra)} (see {prog} --help)")
    except _UsageError as err:
        print(f"hyperadapt: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except HyperAdaptError as err:
        print(f"hyperadapt: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hyperadapt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
