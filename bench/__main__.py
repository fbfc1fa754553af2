"""``python -m bench {run,zero-shot,multilingual,decoder,decoder-cost,kinds,chunking} [--quick]``: see each benchmark module's docstring."""

from __future__ import annotations

import argparse
import logging
import os
import warnings


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    from bench import adapter_kinds, chunking, decoder, decoder_cost, multilingual, report, zero_shot

    benchmarks = {
        "run": (report, "quality, speed, memory and scaling against peft LoRA, with a report"),
        "zero-shot": (zero_shot, "leave-tasks-out zero-/few-shot evaluation"),
        "multilingual": (multilingual, "task x language pairs never trained on (recipes/multilingual.yaml)"),
        "decoder": (decoder, "zero-shot for a causal LM (recipes/decoder_zero_shot.yaml)"),
        "decoder-cost": (
            decoder_cost,
            "a causal LM's training step and memory, with and without checkpointing",
        ),
        "kinds": (adapter_kinds, "LoRA, (IA)^3 and bottleneck adapters against peft LoRA per task"),
        "chunking": (chunking, "generator size and step time, chunked and not, by hidden size"),
    }
    parser = argparse.ArgumentParser(prog="python -m bench")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, summary) in benchmarks.items():
        module.add_arguments(
            commands.add_parser(
                name,
                help=summary,
                description=module.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    args = parser.parse_args()
    from hyperadapt.errors import HyperAdaptError

    try:
        benchmarks[args.command][0].main(args)
    except HyperAdaptError as err:
        parser.exit(2, f"python -m bench {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(
            130, f"python -m bench {args.command}: interrupted; the report folder keeps what it had\n"
        )


if __name__ == "__main__":
    main()
