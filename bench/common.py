"""What every benchmark records with its figures: the machine and library versions, and the report."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path


def environment() -> dict:
    versions = {}
    for name in ("hyperadapt", "torch", "transformers", "peft", "accelerate", "datasets", "evaluate"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
        "versions": versions,
    }


def write_report(out_dir: Path, results: dict, markdown: str, quiet: bool = False) -> None:
    """Write ``results.json`` and ``report.md`` (each through a temporary file) and print the table
    (unless ``quiet``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("results.json", json.dumps(results, indent=2, default=str)), ("report.md", markdown)):
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)  # mkstemp makes it private
            os.replace(tmp, out_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if not quiet:
        print(markdown)
        print(f"wrote {out_dir / 'results.json'} and {out_dir / 'report.md'}")


def check_out_folder(given: str) -> Path:
    """The report folder, created and probed for writing before anything runs.

    Raises:
        HyperAdaptError: when it is empty, a file, or cannot be written.
    """
    from hyperadapt.errors import HyperAdaptError

    out = Path(given)
    if not given.strip() or out.is_file():
        raise HyperAdaptError(
            f"--out {given!r} must name a folder (it is {'empty' if not given.strip() else 'a file'})"
        )
    try:  # found out now, not after an hour of training
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise HyperAdaptError(
            f"--out {out} cannot be written ({err.strerror or err}); choose another folder"
        ) from None
    return out
