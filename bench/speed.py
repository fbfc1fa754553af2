"""Speed, memory and scaling of the hypernetwork against peft LoRA, measured side by side.

Every timing pits the contenders against each other in this process, on the same batch, after
warm-up, interleaved (one call of each in turn, repeated); medians are reported, as ratios to
peft LoRA. Peak memory is measured in fresh processes, one per contender.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench.steps import fresh_base, hypernetwork_step, interleaved_medians, peft_lora_step
from hyperadapt.base_model import load_tokenizer
from hyperadapt.config import HyperNetConfig
from hyperadapt.data import TaskSpec
from hyperadapt.evaluation import encode, labels_tensor

SPEC = TaskSpec(
    "trec_like",
    "sequence_classification",
    ["sentence"],
    labels=["abbreviation", "entity", "description", "human", "location", "number"],
    description="Which kind of answer a question asks for: a person, a place, a number, an entity, ...",
)


def _batch(tokenizer, task, size: int, max_length: int):
    examples = [task.splits["train"][i % len(task.splits["train"])] for i in range(size)]
    return dict(encode(tokenizer, task.spec, examples, max_length)), labels_tensor(task.spec, examples)


def training_step(base_model: str, task, rank: int, batch: int, max_length: int, repeats: int) -> dict:
    """Hypernetwork step / peft LoRA step at the same rank, batch and length; the generator's share."""
    tokenizer = load_tokenizer(base_model)
    inputs, labels = _batch(tokenizer, task, batch, max_length)
    config = HyperNetConfig(base_model=base_model, lora_rank=rank, lora_alpha=2.0 * rank)
    step, generate, hypernet = hypernetwork_step(
        config, [task.spec], fresh_base(base_model, 1), inputs, labels
    )
    peft_step, peft_params = peft_lora_step(
        fresh_base(base_model, task.spec.num_outputs), task.spec, inputs, labels, rank=rank
    )

    def generate_with_backward() -> None:  # the generator's own cost inside a step
        adapters, _ = hypernet(task.spec.name)
        sum(t.sum() for tensors in adapters.values() for t in tensors).backward()

    times = interleaved_medians(
        {
            "hyperadapt": step,
            "peft_lora": peft_step,
            "generation": generate,
            "generation_backward": generate_with_backward,
        },
        repeats,
    )
    return {
        "settings": {"rank": rank, "batch": batch, "max_length": max_length, "repeats": repeats},
        "seconds": times,
        "ratio": times["hyperadapt"] / times["peft_lora"],
        "generator_share": times["generation_backward"] / times["hyperadapt"],
        "trainable_parameters": {"hyperadapt": hypernet.num_parameters(), "peft_lora": peft_params},
    }


@torch.no_grad()
def generation_latency(base_model: str, repeats: int) -> dict:
    """Milliseconds to generate an adapter from a task name, and from a new description (encoded)."""
    from hyperadapt.conditioning import ConditionBuilder
    from hyperadapt.hypernetwork import HyperNetwork
    from hyperadapt.text_encoder import SentenceEncoder

    base = fresh_base(base_model, 1)
    named = HyperNetwork.build(HyperNetConfig(base_model=base_model), [SPEC], base).eval()
    encoder = SentenceEncoder(base_model)
    described = HyperNetwork.build(
        HyperNetConfig(base_model=base_model, conditioning=["description"], head="label_semantic"),
        [SPEC],
        base,
        text_dim=encoder.dim,
    ).eval()
    builder = ConditionBuilder(described.config, described.task_names, encoder)
    counter = iter(range(10**9))

    def from_description() -> None:  # a new wording each call: nothing is cached
        described(builder.build(SPEC, description=f"{SPEC.description} (wording {next(counter)})"))

    times = interleaved_medians(
        {"from_name": lambda: named(SPEC.name), "from_description": from_description}, repeats
    )
    return {name: round(1000 * seconds, 2) for name, seconds in times.items()}


@torch.no_grad()
def inference(base_model: str, task, batch: int, max_length: int, repeats: int) -> dict:
    """Forward time: exported adapter under peft / peft LoRA / merged weights / base model."""
    from peft import PeftModel

    from hyperadapt.export import export_adapter
    from hyperadapt.hypernetwork import HyperNetwork

    tokenizer = load_tokenizer(base_model)
    inputs, _ = _batch(tokenizer, task, batch, max_length)
    hypernet = HyperNetwork.build(
        HyperNetConfig(base_model=base_model), [task.spec], fresh_base(base_model, 1)
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_adapter(hypernet, task.spec.name, Path(tmp) / "adapter")
        exported = PeftModel.from_pretrained(fresh_base(base_model, task.spec.num_outputs), folder).eval()
        merged = PeftModel.from_pretrained(
            fresh_base(base_model, task.spec.num_outputs), folder
        ).merge_and_unload()
    from peft import LoraConfig, get_peft_model

    from hyperadapt.base_model import default_target_modules, head_module_name

    plain = fresh_base(base_model, task.spec.num_outputs)
    lora = get_peft_model(
        fresh_base(base_model, task.spec.num_outputs),
        LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=default_target_modules(plain),
            task_type="SEQ_CLS",
            modules_to_save=[head_module_name(plain)],
        ),
    ).eval()
    with torch.inference_mode():
        times = interleaved_medians(
            {
                "exported_adapter_peft": lambda: exported(**inputs),
                "peft_lora": lambda: lora(**inputs),
                "merged": lambda: merged(**inputs),
                "base_model": lambda: plain(**inputs),
                # The same model timed twice: how far apart two identical contenders come out here.
                "base_model_again": lambda: plain(**inputs),
            },
            repeats,
        )
    ms = {k: round(1000 * v, 2) for k, v in times.items()}
    return {
        "settings": {"batch": batch, "max_length": max_length, "repeats": repeats},
        "milliseconds": ms,
        "exported_over_peft_lora": times["exported_adapter_peft"] / times["peft_lora"],
        "merged_over_base": times["merged"] / times["base_model"],
        "noise": max(0.02, abs(times["base_model_again"] / times["base_model"] - 1)),
    }


MEMORY_CHILD = """
import json, resource, sys
sys.path.insert(0, sys.argv[4])
import torch
from bench.steps import fresh_base, hypernetwork_step, peft_lora_step
from hyperadapt.base_model import load_tokenizer
from hyperadapt.builtin_tasks import load_builtin_task
from hyperadapt.config import HyperNetConfig
from hyperadapt.evaluation import encode, labels_tensor
kind, base_model, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
task = load_builtin_task("trec_coarse")
examples = task.splits["train"][:16]
inputs = dict(encode(load_tokenizer(base_model), task.spec, examples, 64))
labels = labels_tensor(task.spec, examples)
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
if kind == "hyperadapt":
    step = hypernetwork_step(HyperNetConfig(base_model=base_model), [task.spec], fresh_base(base_model, 1), inputs, labels)[0]
else:
    step = peft_lora_step(fresh_base(base_model, task.spec.num_outputs), task.spec, inputs, labels)[0]
loaded = status("VmRSS")
# Reset the high-water mark (Linux): loading the model peaks higher than training does.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
for _ in range(steps):
    step()
print(json.dumps({
    "training_peak_kb": status("VmHWM"),
    "after_load_kb": loaded,
    "process_peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


def peak_memory(base_model: str, steps: int) -> dict:
    """Peak resident memory while training (after the model is loaded), each contender in a fresh process."""
    root = str(Path(__file__).resolve().parents[1])
    out = {}
    for kind in ("hyperadapt", "peft_lora"):
        proc = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, kind, base_model, str(steps), root],
            capture_output=True,
            text=True,
            check=True,
        )
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "steps": steps,
        "peak_mb": {k: round(v["training_peak_kb"] / 1024, 1) for k, v in out.items()},
        "after_load_mb": {k: round(v["after_load_kb"] / 1024, 1) for k, v in out.items()},
        "process_peak_mb": {k: round(v["process_peak_kb"] / 1024, 1) for k, v in out.items()},
        "ratio": out["hyperadapt"]["training_peak_kb"] / out["peft_lora"]["training_peak_kb"],
    }
