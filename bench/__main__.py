"""``python -m bench zero-shot [--quick]``: see each benchmark module's docstring."""

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

    from bench import zero_shot

    parser = argparse.ArgumentParser(prog="python -m bench")
    commands = parser.add_subparsers(dest="command", required=True)
    zero_shot.add_arguments(
        commands.add_parser(
            "zero-shot",
            help="leave-tasks-out zero-/few-shot evaluation",
            description=zero_shot.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    args = parser.parse_args()
    if args.command == "zero-shot":
        zero_shot.main(args)


if __name__ == "__main__":
    main()
