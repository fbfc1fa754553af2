"""Local `evaluate` metric modules, so that evaluation works offline.

``evaluate.load("accuracy")`` fetches its script from the Hugging Face Hub and fails offline. The
files in this folder are standalone metric scripts that ``evaluate.load`` takes by path instead:

- ``accuracy.py`` -> ``{"accuracy"}``
- ``f1.py`` -> ``{"macro_f1"}`` (macro F1 over the classes in references or predictions)
- ``matthews_correlation.py`` -> ``{"matthews_correlation"}`` (multiclass MCC)
- ``correlation.py`` -> ``{"pearson", "spearman"}``
- ``entity_f1.py`` -> ``{"f1", "precision", "recall", "token_accuracy"}`` (entity spans of BIO
  tag sequences, scored as seqeval does)
- ``exact_match.py`` -> ``{"exact_match"}`` (generated text against the reference, normalised)

Example:
    >>> compute_metrics("sequence_classification", [0, 1, 1], [0, 1, 0])  # doctest: +SKIP
    {'accuracy': 0.666..., 'macro_f1': 0.666..., 'matthews_correlation': 0.5}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ..data import TASK_TYPES
from ..errors import HyperAdaptError

logger = logging.getLogger(__name__)

__all__ = ["METRIC_FILES", "compute_metrics", "load_metric", "metric_path"]

METRIC_DIR = Path(__file__).resolve().parent

METRIC_FILES = {
    "accuracy": "accuracy.py",
    "macro_f1": "f1.py",
    "matthews_correlation": "matthews_correlation.py",
    "pearson": "correlation.py",
    "spearman": "correlation.py",
    "f1": "entity_f1.py",
    "precision": "entity_f1.py",
    "recall": "entity_f1.py",
    "token_accuracy": "entity_f1.py",
    "exact_match": "exact_match.py",
}
"""Metric name -> the module file in this folder that computes it."""

_CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "matthews_correlation")
_REGRESSION_METRICS = ("pearson", "spearman")
_TOKEN_METRICS = ("f1", "precision", "recall", "token_accuracy")


def metric_path(name: str) -> Path:
    """The absolute path of the module file that computes metric ``name``.

    Args:
        name: One of the keys of `METRIC_FILES` (``accuracy``, ``macro_f1``, ``f1``, ``pearson``, ...).

    Raises:
        HyperAdaptError: for an unknown name.
    """
    if name not in METRIC_FILES:
        raise HyperAdaptError(f"unknown metric {name!r}; the metrics are {', '.join(METRIC_FILES)}")
    return METRIC_DIR / METRIC_FILES[name]


@cache
def _load_file(filename: str) -> Any:
    import evaluate

    path = METRIC_DIR / filename
    logger.debug("loading metric module %s", path)
    return evaluate.load(str(path))


def load_metric(name: str) -> Any:
    """Load the local `evaluate` module that computes metric ``name`` (cached per process).

    ``pearson`` and ``spearman`` share one module, which returns both. The module is shared by
    every caller in the process: finish one ``add_batch`` ... ``compute`` round before starting another.

    Args:
        name: One of the keys of `METRIC_FILES` (``accuracy``, ``macro_f1``, ``f1``, ``pearson``, ...).

    Raises:
        HyperAdaptError: for an unknown name.
    """
    return _load_file(metric_path(name).name)


def compute_metrics(
    task_type: str, predictions: Sequence[Any], references: Sequence[Any], labels: Sequence[str] | None = None
) -> dict[str, float]:
    """Compute a task type's metrics in one go.

    Args:
        task_type: ``regression`` gives ``pearson`` and ``spearman`` (float predictions); the
            classification types (``sequence_classification``, ``sentence_pair_classification``)
            give ``accuracy``, ``macro_f1`` and ``matthews_correlation`` (class-index predictions).
            ``token_classification`` gives entity-level ``f1``, ``precision``, ``recall`` and
            ``token_accuracy`` (a list of tag indices per example, named by ``labels``).
            ``text_generation`` gives ``exact_match`` (generated and reference texts).
        predictions: One prediction per example (numbers, a list or a numpy array).
        references: One reference per example.
        labels: Token classification: the tag names (BIO tags) that the indices stand for.

    Raises:
        HyperAdaptError: for an unknown task type, or predictions and references of different
            lengths.
    """
    if task_type not in TASK_TYPES:
        raise HyperAdaptError(f"unknown task_type {task_type!r}; use one of {', '.join(TASK_TYPES)}")
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise HyperAdaptError(
            f"got {len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    if task_type == "token_classification":
        if not labels:
            raise HyperAdaptError("token classification metrics need the tag names (labels)")
        names = _TOKEN_METRICS
        predictions = [[labels[int(i)] for i in seq] for seq in predictions]
        references = [[labels[int(i)] for i in seq] for seq in references]
    elif task_type == "text_generation":
        names = ("exact_match",)
        predictions = [str(x) for x in predictions]
        references = [str(x) for x in references]
    elif task_type == "regression":
        names = _REGRESSION_METRICS
        predictions = [float(x) for x in predictions]
        references = [float(x) for x in references]
    else:
        names = _CLASSIFICATION_METRICS
        predictions = [int(x) for x in predictions]
        references = [int(x) for x in references]
    results: dict[str, float] = {}
    for filename in dict.fromkeys(METRIC_FILES[name] for name in names):
        module = _load_file(filename)
        results.update(module.compute(predictions=predictions, references=references))
    return {name: float(results[name]) for name in names}
