"""A training run's folder: resumable checkpoints (numbered folders written whole, the last K
kept), and the checks that decide whether a run starts, resumes, or may not touch the folder.

A checkpoint is ``<output_dir>/checkpoints/step_NNNNNN/``. It holds what `accelerate`'s
``save_state`` writes (the hypernetwork as ``model.safetensors``, the optimiser and scheduler
states, every process's RNG states) and two files of ours:

- ``trainer_state.json``: the step, the world size, the recipe, the task sampler's and batch
  streams' positions, the condition sampler's generator, and the best validation score so far;
- ``best.safetensors``: the hypernetwork weights of that best evaluation (the run's final
  output is the best checkpoint, so a resumed run must remember it).

Every file is written into ``checkpoints/.step_NNNNNN.partial`` first and the folder is renamed
into place once complete, so a crash mid-save leaves the earlier checkpoints as they were and
never a half-written one under a checkpoint's name. Weights load from safetensors; the optimiser,
scheduler and RNG states load through accelerate with ``torch.load(weights_only=True)``, which
restores tensors and plain containers and refuses anything that would run code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from .errors import HyperAdaptError

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
BEST_FILE = "best.safetensors"
STATE_FORMAT = 1
_NAME = re.compile(r"^step_(\d+)$")
# Names in the staging folder of a run's outputs (tempfile.mkdtemp's 8-character suffix).
_STAGING = re.compile(r"^[a-z0-9_]{8}$")
METRICS_FILE = "metrics.json"
LOGS = "logs"
# What the end of a run writes into its folder.
OUTPUTS = ("hypernetwork", "adapters", METRICS_FILE)
_STAGED = {*OUTPUTS, CHECKPOINTS, LOGS}
# Files that mark a folder as a training run's, which --overwrite may replace.
RUN_MARKERS = (METRICS_FILE, "hypernetwork/config.json", CHECKPOINTS)

# Recipe settings that may change between a run and its resumption: they do not change what is
# computed. Everything else must match, or the resumed run would not continue the same run.
RESUMABLE_CHANGES = (
    "output_dir",
    "training.log_every",
    "training.save_every",
    "training.save_total_limit",
    "training.report_to",
    "training.gradient_checkpointing",  # the same gradients, recomputed
)


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The complete checkpoints of a run, oldest first (partial folders are not listed)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir() and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def recover_checkpoints(run_dir: Path) -> None:
    """Put back checkpoints left in a staging folder by a run killed while writing its outputs.

    A finished run's outputs are assembled in a hidden folder beside the run folder, its
    checkpoints are moved in, and the folder is renamed into place; a kill between those renames
    leaves the checkpoints in the hidden folder. Staging folders of killed runs are removed.
    """
    if run_dir.is_symlink():  # outputs are staged beside the folder the link points to
        run_dir = run_dir.resolve()
    if not run_dir.parent.is_dir():
        return
    for sibling in sorted(run_dir.parent.glob(f".{run_dir.name}.*")):
        if (
            not sibling.is_dir()
            or sibling.is_symlink()
            or not _STAGING.match(sibling.name[len(run_dir.name) + 2 :])
        ):
            continue
        if not all(p.name in _STAGED or p.name.startswith(".hypernetwork.") for p in sibling.iterdir()):
            continue  # not a folder hyperadapt staged: leave it alone
        if (sibling / CHECKPOINTS).is_dir() and not (run_dir / CHECKPOINTS).is_dir():
            run_dir.mkdir(parents=True, exist_ok=True)
            os.replace(sibling / CHECKPOINTS, run_dir / CHECKPOINTS)
        if not (sibling / CHECKPOINTS).exists():
            shutil.rmtree(sibling, ignore_errors=True)


def latest_is_final(run_dir: Path) -> bool:
    """Whether a run's last checkpoint is at its last step (False when it has none)."""
    found = list_checkpoints(run_dir)
    if not found:
        return False
    step, path = found[-1]
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        return step >= int(state["recipe"]["training"]["max_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def find_checkpoint(run_dir: Path, resume: str) -> Path | None:
    """Resolve ``--resume``: ``latest`` (None when the run has no checkpoint yet) or a folder."""
    if resume.strip().lower() == "latest":
        found = list_checkpoints(run_dir)
        return found[-1][1] if found else None
    path = Path(resume)
    if not path.is_dir():
        if "=" in resume and not path.exists():
            raise HyperAdaptError(
                f"--resume {resume}: no such checkpoint folder; to pass the override {resume!r}, put it "
                "before --resume or write --resume latest"
            )
        raise HyperAdaptError(
            f"--resume {resume}: no such checkpoint folder; use --resume latest or a folder such as "
            f"{Path(run_dir) / CHECKPOINTS / checkpoint_name(200)}"
        )
    if not (path / STATE_FILE).is_file():
        raise HyperAdaptError(
            f"--resume {resume}: not a hyperadapt checkpoint ({STATE_FILE} is missing); checkpoints are "
            f"the {CHECKPOINTS}/step_N folders inside a run's output folder"
        )
    return path


def read_state(checkpoint: Path) -> dict[str, Any]:
    """Read and check a checkpoint's ``trainer_state.json``."""
    path = checkpoint / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HyperAdaptError(
            f"checkpoint {checkpoint} is damaged ({STATE_FILE}: {err}); resume from an earlier one with "
            "--resume PATH"
        ) from None
    keys = ("format", "step", "world_size", "recipe", "sampler", "streams", "conditions", "best")
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise HyperAdaptError(
            f"checkpoint {checkpoint}: {STATE_FILE} is not a hyperadapt trainer state; resume from an "
            "earlier checkpoint with --resume PATH"
        )
    problem = _state_problem(state, checkpoint)
    if problem:
        raise HyperAdaptError(
            f"checkpoint {checkpoint} is damaged ({STATE_FILE}: {problem}); resume from an earlier one "
            "with --resume PATH"
        )
    if state["format"] != STATE_FORMAT:
        raise HyperAdaptError(
            f"checkpoint {checkpoint} was written in format {state['format']}, this version reads "
            f"{STATE_FORMAT}; resume it with the hyperadapt version that wrote it"
        )
    needed = ["model.safetensors", "optimizer.bin", "scheduler.bin"]
    if state["best"]["score"] is not None:
        needed.append(BEST_FILE)  # the weights of the best evaluation the state reports
    for name in needed:
        if not (checkpoint / name).is_file():
            raise HyperAdaptError(
                f"checkpoint {checkpoint} is incomplete ({name} is missing); resume from an earlier one "
                "with --resume PATH"
            )
    return state


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rng_ok(state: Any) -> bool:
    return isinstance(state, dict) and isinstance(state.get("rng"), dict) and "state" in state["rng"]


def _state_problem(state: dict[str, Any], checkpoint: Path) -> str | None:
    """What is wrong with a trainer state's fields, or None."""
    for key in ("format", "step", "world_size"):
        if not _is_int(state[key]):
            return f"{key} is {state[key]!r}, not an integer"
    recipe = state["recipe"]
    if not isinstance(recipe, dict) or not isinstance(recipe.get("training"), dict):
        return "recipe is not a recipe"
    max_steps = recipe["training"].get("max_steps")
    if not _is_int(max_steps) or not 0 < state["step"] <= max_steps:
        return f"step {state['step']!r} is not within the recipe's 1..{max_steps!r} steps"
    match = _NAME.match(checkpoint.name)
    if match and int(match.group(1)) != state["step"]:
        return f"step {state['step']} does not match the folder's name"
    if state["world_size"] < 1:
        return f"world_size {state['world_size']} is below 1"
    if not _rng_ok(state["sampler"]) or not _rng_ok(state["conditions"]):
        return "the sampler or condition state is not a random generator state"
    streams = state["streams"]
    if not isinstance(streams, list) or not all(
        _rng_ok(s)
        and isinstance(s.get("order"), list)
        and all(_is_int(i) and i >= 0 for i in s["order"])
        and _is_int(s.get("position"))
        and _is_int(s.get("epoch"))
        for s in streams
    ):
        return "streams is not a list of batch stream states"
    best = state["best"]
    if (
        not isinstance(best, dict)
        or not (best.get("score") is None or isinstance(best.get("score"), (int, float)))
        or not _is_int(best.get("step"))
        or not isinstance(best.get("metrics"), dict)
    ):
        return "best is not a score, a step and metrics"
    running = state.get("running", [0.0, 0])
    if not (
        isinstance(running, list) and len(running) == 2 and all(isinstance(v, (int, float)) for v in running)
    ):
        return "running is not a [sum, count] pair"
    return None


def check_same_data(checkpoint: Path, state: dict[str, Any], data_digest: str, sizes: list[int]) -> None:
    """Refuse a checkpoint whose run trained on other data (or whose stream states do not fit it)."""
    saved = state.get("data_digest")
    if saved is not None and saved != data_digest:
        raise HyperAdaptError(
            f"checkpoint {checkpoint} was written for other training data: a task's examples or its "
            "task.json (description, labels) changed since the run started; resume with the data it "
            "started with, or start a new run"
        )
    streams = state["streams"]
    if len(streams) != len(sizes) or any(
        any(i >= size for i in stream["order"]) for stream, size in zip(streams, sizes)
    ):
        raise HyperAdaptError(
            f"checkpoint {checkpoint} is damaged ({STATE_FILE}: its batch streams do not fit the recipe's "
            f"{len(sizes)} tasks); resume from an earlier one with --resume PATH"
        )


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _training_defaults() -> dict[str, Any]:
    from dataclasses import asdict

    from .recipe import TrainingConfig

    return _flatten({"training": asdict(TrainingConfig())})


def recipe_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted recipe keys whose values differ, ignoring the settings a resumption may change.

    A training setting missing from the saved recipe (one added to hyperadapt after the
    checkpoint was written) counts as its default."""
    old, new = _flatten(saved), _flatten(current)
    old = {**{k: v for k, v in _training_defaults().items() if k in new}, **old}
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES)]


def _processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def check_same_recipe(checkpoint: Path, state: dict[str, Any], recipe: dict[str, Any]) -> None:
    """Refuse a checkpoint written by another recipe (naming the settings that changed)."""
    changed = recipe_differences(state["recipe"], recipe)
    if changed:
        shown = ", ".join(changed[:6]) + (", ..." if len(changed) > 6 else "")
        raise HyperAdaptError(
            f"checkpoint {checkpoint} was written by a different recipe (changed: {shown}); resume with "
            "the recipe and overrides the run started with, or start a new run in another --output-dir"
        )


def check_same_world(checkpoint: Path, state: dict[str, Any], world_size: int) -> None:
    """Refuse a checkpoint written by a different number of processes."""
    if state["world_size"] != world_size:
        raise HyperAdaptError(
            f"checkpoint {checkpoint} was written by {_processes(state['world_size'])} and this run has "
            f"{world_size}; resume with the same number of processes (the per-process batches and RNG "
            "states depend on it)"
        )


def save_checkpoint(
    accelerator,
    run_dir: Path,
    step: int,
    state: dict[str, Any],
    best_weights: dict[str, torch.Tensor] | None,
    keep: int,
) -> Path:
    """Write checkpoint ``step`` (all processes call this), then delete all but the last ``keep``."""
    from safetensors.torch import save_file

    root = run_dir / CHECKPOINTS
    target = root / checkpoint_name(step)
    partial = root / f".{target.name}.partial"
    try:
        if accelerator.is_main_process:
            root.mkdir(parents=True, exist_ok=True)
            for stale in root.glob(".*.partial"):
                shutil.rmtree(stale, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(partial), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if best_weights is not None:
                save_file({k: v.contiguous() for k, v in best_weights.items()}, str(partial / BEST_FILE))
            # The state file goes last: a folder without it is never taken for a checkpoint.
            (partial / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            os.replace(partial, target)
            found = list_checkpoints(run_dir)
            # Later checkpoints belong to a continuation this run was resumed over: they go first.
            later = [path for number, path in found if number > step]
            kept = [path for number, path in found if number <= step]
            for old in later + kept[:-keep]:
                trash = old.with_name(f".{old.name}.partial")
                os.replace(old, trash)  # no longer looks like a checkpoint, even if deletion stops midway
                shutil.rmtree(trash, ignore_errors=True)
    except (OSError, RuntimeError) as err:  # a full disk shows up as either
        found = list_checkpoints(run_dir)
        last = f"the last complete one is {found[-1][1]}" if found else "there is no complete one yet"
        detail = " ".join(str(err).split())[:200]
        raise HyperAdaptError(
            f"cannot write checkpoint {target} ({type(err).__name__}: {detail}); {last}. Free disk space or "
            "fix the folder's permissions, then continue with --resume"
        ) from None
    accelerator.wait_for_everyone()
    return target


def load_best(checkpoint: Path, reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The best evaluation's weights, checked against the hypernetwork's own names and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = checkpoint / BEST_FILE
    if not path.is_file():
        return None
    try:
        best = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise HyperAdaptError(
            f"checkpoint {checkpoint}: {BEST_FILE} is corrupt or truncated ({err}); resume from an earlier "
            "one with --resume PATH"
        ) from None
    wrong = sorted(set(best) ^ set(reference)) + sorted(
        k for k in set(best) & set(reference) if best[k].shape != reference[k].shape
    )
    if wrong:
        raise HyperAdaptError(
            f"checkpoint {checkpoint}: {BEST_FILE} does not match the hypernetwork (tensors {wrong[:4]}); "
            "resume from an earlier one with --resume PATH"
        )
    return best


def _rng_problem(checkpoint: Path, process_index: int) -> str | None:
    """accelerate skips RNG states it cannot read; a resumed run would then draw other numbers."""
    from accelerate.utils import load

    path = checkpoint / f"random_states_{process_index}.pkl"
    if not path.is_file():
        return (
            f"has no RNG state for process {process_index}; resume with the number of processes that wrote it"
        )
    try:
        states = load(str(path))  # weights_only: plain data only, never code
    except Exception as err:
        return f"cannot be loaded ({path.name}: {type(err).__name__}); resume from an earlier one with --resume PATH"
    if not isinstance(states, dict) or not {"random_state", "numpy_random_seed", "torch_manual_seed"} <= set(
        states
    ):
        return f"cannot be loaded ({path.name} is not an RNG state); resume from an earlier one with --resume PATH"
    return None


def load_checkpoint(accelerator, checkpoint: Path) -> None:
    """Restore the hypernetwork, optimiser, scheduler and RNG states (all processes call this)."""
    from accelerate.utils import gather_object

    problems = [p for p in gather_object([_rng_problem(checkpoint, accelerator.process_index)]) if p]
    if problems:  # every process stops with the same message
        raise HyperAdaptError(f"checkpoint {checkpoint} {problems[0]}")
    try:
        accelerator.load_state(str(checkpoint))
    except HyperAdaptError:
        raise
    except Exception as err:  # safetensors, torch.load and shape errors all mean a damaged checkpoint
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        detail = " ".join(lines[:3])[:300] if lines else type(err).__name__
        raise HyperAdaptError(
            f"checkpoint {checkpoint} cannot be loaded ({type(err).__name__}: {detail}); resume "
            "from an earlier one with --resume PATH, or start over with --overwrite"
        ) from None


def resume_point(out: Path, resume: str | None, overwrite: bool) -> Path | None:
    """Check the output folder for a new or a resumed run; return the checkpoint to resume from.

    Everything is checked before any work is done and before anything is written.
    """
    from .export import check_output_folder

    if int(os.environ.get("RANK", "0")) == 0:
        recover_checkpoints(out)
    has_checkpoints = bool(list_checkpoints(out))
    finished = (out / METRICS_FILE).exists() and (not has_checkpoints or latest_is_final(out))
    if resume is None:
        if not overwrite and has_checkpoints and not finished:
            raise HyperAdaptError(
                f"output folder {out} holds checkpoints of an unfinished run; pass --resume latest to "
                "continue it, or --overwrite to start over"
            )
        check_output_folder(out, overwrite, "--output-dir", RUN_MARKERS, "a training run")
        return None
    if overwrite:
        raise HyperAdaptError("--overwrite starts a run over and --resume continues one; pass only one")
    if finished:
        raise HyperAdaptError(
            f"the run in {out} has finished ({METRICS_FILE} is written), so there is nothing to resume; "
            "start a new run with another --output-dir, or pass --overwrite instead of --resume"
        )
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CHECKPOINTS).is_dir())):
        raise HyperAdaptError(
            f"output folder {out} is not a training run hyperadapt started (it has no {CHECKPOINTS}/ "
            "folder); check --output-dir"
        )
    checkpoint = find_checkpoint(out, resume)
    if checkpoint is None and out.is_dir():
        # Starting from step 0 in a folder that holds only what a run killed before its first
        # checkpoint leaves (its logs, a partial checkpoint); anything else is not ours to mix with.
        root = out / CHECKPOINTS
        foreign = [p.name for p in out.iterdir() if p.name not in (CHECKPOINTS, LOGS)]
        if root.is_dir():
            foreign += [f"{CHECKPOINTS}/{p.name}" for p in root.iterdir() if not p.name.endswith(".partial")]
        if foreign:
            raise HyperAdaptError(
                f"output folder {out} holds {sorted(foreign)[:4]} but no hyperadapt checkpoint to resume; "
                "check --output-dir, or start a run in an empty folder"
            )
    return checkpoint


def check_shared_folder(accelerator, folder: Path) -> None:
    """Every process must see the checkpoints folder the main process writes (its RNG states go there)."""
    from accelerate.utils import gather_object

    token = folder / f".shared-{os.getpid()}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        token.write_text("")
    token = Path(gather_object([str(token)])[0])  # the main process's name for it
    accelerator.wait_for_everyone()
    missing = [rank for rank, seen in enumerate(gather_object([token.exists()])) if not seen]
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        token.unlink(missing_ok=True)
    if missing:
        raise HyperAdaptError(
            f"processes {missing} do not see {folder} as the main process writes it; checkpoints need "
            "one output folder that every process shares (a shared file system on several machines), or "
            "training.save_every: 0"
        )
