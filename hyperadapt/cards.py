"""Model cards for hypernetworks and generated adapters, rendered from ``model_cards/`` templates.

The hypernetwork card lists the training tasks and languages, the recipe, validation results per
task as ``model-index`` entries (``EvalResult``), the base model, the adapter kind and size, and how
to generate and load an adapter. A pushed adapter's card carries ``library_name: peft``,
``base_model`` and tags, and names the hypernetwork and the condition it came from.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hub import ADAPTER_CONFIG, CARD_NAME, RECIPE_NAME, _looks_like_repo_id

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from .hypernetwork import HyperNetwork


_KIND_NAMES = {"ia3": "(IA)^3", "bottleneck": "bottleneck"}


def _kind_tag(cfg) -> str:
    kind = getattr(cfg, "adapter", "lora")
    return kind if kind in _KIND_NAMES else "lora"


def kind_name(cfg) -> str:
    """How cards name the adapters a hypernetwork writes (``adapter: none`` writes LoRA folders)."""
    return _KIND_NAMES.get(getattr(cfg, "adapter", "lora"), "LoRA")


def adapter_parameters(cfg) -> int:
    """Parameters of one generated adapter (without the task head); 0 for ``adapter: none``."""
    kind = getattr(cfg, "adapter", "lora")
    if kind == "ia3":
        return sum(len(cfg.module_layers.get(k, [])) * cfg.vector_size(k) for k in cfg.module_shapes)
    if kind == "bottleneck":  # down and up projections with their biases
        size = cfg.bottleneck_size
        return sum(
            len(cfg.module_layers.get(k, [])) * (2 * size * out_f + size + out_f)
            for k, (_, out_f) in cfg.module_shapes.items()
        )
    if kind != "lora":
        return 0
    return sum(
        len(cfg.module_layers.get(kind, [])) * cfg.lora_rank * (in_f + out_f)
        for kind, (in_f, out_f) in cfg.module_shapes.items()
    )


def _recipe_text(recipe: Any, source_dir: Path | None) -> str | None:
    import yaml

    if recipe is None and source_dir is not None and (source_dir / RECIPE_NAME).is_file():
        return (source_dir / RECIPE_NAME).read_text(encoding="utf-8")
    if recipe is None:
        return None
    if isinstance(recipe, str):
        return recipe
    data = recipe.to_dict() if hasattr(recipe, "to_dict") else recipe
    return yaml.safe_dump(data, sort_keys=False)


def card_metrics(folder: str | Path) -> dict[str, dict[str, float]]:
    """The evaluation results (``{task: {metric: value}}``) in a folder's card, or from its run.

    Reads the ``model-index`` of ``README.md``; for a training run's ``hypernetwork/`` folder
    without one, the ``metrics.json`` beside it.
    """
    from huggingface_hub import ModelCard

    folder = Path(folder)
    results: dict[str, dict[str, float]] = {}
    card = folder / CARD_NAME
    if card.is_file():
        try:
            data = ModelCard.load(card, ignore_metadata_errors=True).data
        except Exception:  # a hand-edited card: its metrics are just unknown
            data = None
        for result in (getattr(data, "eval_results", None) or []) if data is not None else []:
            results.setdefault(result.dataset_type, {})[result.metric_type] = result.metric_value
    run_metrics = folder.parent / "metrics.json"
    if not results and run_metrics.is_file():
        with contextlib.suppress(ValueError, OSError):
            validation = json.loads(run_metrics.read_text(encoding="utf-8")).get("validation") or {}
            results = {task: dict(values) for task, values in validation.items()}
    return results


def known_metrics(hypernet: HyperNetwork, task: str) -> dict[str, float] | None:
    """The recorded validation metrics of one of the hypernetwork's tasks, if its card has them."""
    source = getattr(hypernet, "source_dir", None)
    if source is None:
        return None
    return card_metrics(source).get(task) or None


def hypernetwork_card(
    hypernet: HyperNetwork,
    metrics: dict[str, dict[str, Any]] | None = None,
    recipe: Any = None,
    repo_id: str | None = None,
    baselines: dict[str, float | None] | None = None,
    best_step: int | None = None,
    **_: Any,
) -> ModelCard:
    """The hypernetwork's model card, rendered from ``model_cards/hypernetwork_card.md``.

    Args:
        hypernet: The hypernetwork.
        metrics: Validation metrics per task; each float becomes a ``model-index`` result.
        recipe: The training recipe (a `Recipe`, a dict or YAML text), shown in the card.
        repo_id: Where the card will live, for the usage snippets.
        baselines: Majority-class baselines per task, shown next to the main metric.
        best_step: The training step of the kept checkpoint.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .base_model import hub_id_of
    from .export import _template

    cfg = hypernet.config
    source = getattr(hypernet, "source_dir", None)
    base_id = hub_id_of(cfg.base_model)
    portable = _looks_like_repo_id(base_id)
    specs = list(getattr(hypernet, "task_specs", []))
    languages = sorted({s.language for s in specs}) or ["en"]
    name = (repo_id or "").rsplit("/", 1)[-1] or "hyperadapt-hypernetwork"

    eval_results, rows = [], []
    for spec in specs:
        values = (metrics or {}).get(spec.name) or {}
        for metric, value in values.items():
            if not isinstance(value, float):
                continue  # counts such as "n"
            eval_results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name=spec.task_type.replace("_", " "),
                    dataset_type=spec.name,
                    dataset_name=spec.name,
                    dataset_split="validation",
                    metric_type=metric,
                    metric_name=metric.replace("_", " "),
                    metric_value=round(value, 4),
                )
            )
            baseline = (baselines or {}).get(spec.name) if metric == spec.main_metric else None
            rows.append(
                {
                    "task": spec.name,
                    "metric": metric,
                    "value": f"{value:.4f}",
                    "baseline": f"{baseline:.4f}" if isinstance(baseline, float) else "",
                }
            )

    data = ModelCardData(
        library_name="hyperadapt",
        tags=sorted(
            {"hyperadapt", "hypernetwork", _kind_tag(cfg), "adapter-generator"}
            | ({"peft"} if _kind_tag(cfg) != "bottleneck" else set())
        ),
        base_model=base_id if portable else None,
        language=languages,
        pipeline_tag="text-generation" if cfg.is_causal_lm else "text-classification",
        model_name=name if eval_results else None,
        eval_results=eval_results or None,
    )
    recipe_text = _recipe_text(recipe, source)
    num_params = adapter_parameters(cfg)
    example = specs[0] if specs else None
    ref = repo_id or (str(source) if source is not None else "PATH_OR_REPO_ID")
    conditioning = list(getattr(cfg, "conditioning", ["name"]))
    return ModelCard.from_template(
        data,
        template_str=_template("hypernetwork_card.md"),
        model_name=name,
        base_model=base_id,
        base_model_as_trained=cfg.base_model,
        base_model_revision=cfg.base_model_revision,
        model_type=cfg.model_type,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        conditioning=", ".join(conditioning) if conditioning else "none: one shared adapter",
        adapter_kind=getattr(cfg, "adapter", "lora"),
        kind_name=kind_name(cfg),
        rank=cfg.lora_rank,
        alpha=cfg.lora_alpha,
        bottleneck_size=getattr(cfg, "bottleneck_size", None),
        activation=getattr(cfg, "bottleneck_activation", None),
        target_modules=", ".join(cfg.target_modules or []),
        num_modules=sum(len(v) for v in cfg.module_layers.values()),
        adapter_parameters=f"{num_params:,}",
        adapter_size=_human_bytes(4 * num_params),
        head=_HEADS.get(getattr(cfg, "head", "task"), getattr(cfg, "head", "task")),
        text_encoder=getattr(cfg, "text_encoder", None) if cfg.uses_text_encoder else None,
        hypernetwork_parameters=f"{hypernet.num_parameters():,}",
        generator_parameters=f"{hypernet.generator_parameters():,}",
        tasks=[
            {
                "name": s.name,
                "task_type": s.task_type,
                "language": s.language,
                "labels": ", ".join(s.labels) if s.labels else ("free text" if s.is_generation else "score"),
                "description": " ".join((s.description or "").split()).replace("|", "/"),
            }
            for s in specs
        ],
        languages=", ".join(languages),
        results=rows,
        baselines=bool(baselines) and any(r["baseline"] for r in rows),
        best_step=best_step,
        recipe=recipe_text,
        repo_ref=ref,
        example_task=example.name if example else "TASK",
        example_num_labels=example.num_outputs if example else 2,
        causal_lm=cfg.is_causal_lm,
    )


_HEADS = {
    "task": "a learned classifier head per training task",
    "label_semantic": "label-semantic: output rows computed from the encoded label names and descriptions",
}


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def adapter_card_for_push(folder: str | Path, repo_id: str) -> ModelCard:
    """An adapter folder's card, made ready for the Hub.

    Keeps the card that export wrote and makes sure its metadata says what the Hub needs to
    list a peft adapter: ``library_name: peft``, ``base_model`` (when the adapter names a Hub
    model rather than a local folder) and tags; the usage snippet is pointed at ``repo_id``.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    card_file = folder / CARD_NAME
    if card_file.is_file():
        text = card_file.read_text(encoding="utf-8").replace("PATH_OR_REPO_OF_THIS_ADAPTER", repo_id)
        card = ModelCard(text, ignore_metadata_errors=True)
    else:
        card = ModelCard(f"---\n---\n\n# {repo_id}\n\nAn adapter generated by hyperadapt.\n")
    data = card.data if isinstance(card.data, ModelCardData) else ModelCardData(**card.data.to_dict())
    bottleneck = (folder / "bottleneck_config.json").is_file()
    if bottleneck:  # hyperadapt's own adapter kind: hyperadapt.from_pretrained loads it
        adapter_config = json.loads((folder / "bottleneck_config.json").read_text(encoding="utf-8"))
        base, kind, library = adapter_config.get("base_model"), "bottleneck", "hyperadapt"
    else:
        adapter_config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        base = adapter_config.get("base_model_name_or_path")
        kind = "ia3" if adapter_config.get("peft_type") == "IA3" else "lora"
        library = "peft"
    data.library_name = library
    if not data.base_model and isinstance(base, str) and _looks_like_repo_id(base):
        data.base_model = base
    data.tags = sorted({*(data.tags or []), library, kind, "hyperadapt", "generated-adapter"})
    card.data = data
    return card
