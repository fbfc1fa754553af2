"""Pearson and Spearman correlation between float predictions and references.

A standalone `evaluate` metric module: load it with ``evaluate.load("/path/to/correlation.py")``.
"""

import datasets
import evaluate
import numpy as np
from scipy import stats

_DESCRIPTION = """Pearson's r measures how well a straight line relates predictions to references;
Spearman's rho is Pearson's r of their ranks, so it measures how well any increasing function
does. Both lie in [-1, 1]. Either is 0.0 where it is undefined: fewer than two examples, or
constant predictions or references."""

_INPUTS_DESCRIPTION = """
Args:
    predictions (list of float): Predicted scores.
    references (list of float): Reference scores, one per prediction.

Returns:
    pearson (float): Pearson's correlation coefficient, 0.0 when undefined.
    spearman (float): Spearman's rank correlation coefficient, 0.0 when undefined.

Example:
    >>> metric = evaluate.load("hyperadapt/metrics/correlation.py")  # doctest: +SKIP
    >>> metric.compute(predictions=[1.0, 2.0, 4.0], references=[1.0, 2.0, 3.0])  # doctest: +SKIP
    {'pearson': 0.9819805060619655, 'spearman': 1.0}
"""


def _finite_or_zero(value):
    value = float(value)
    return value if np.isfinite(value) else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS_DESCRIPTION)
class Correlation(evaluate.Metric):
    """Pearson and Spearman correlation for regression."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.float64)
        if predictions.size < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0:
            return {"pearson": 0.0, "spearman": 0.0}
        pearson = stats.pearsonr(predictions, references)[0]
        spearman = stats.spearmanr(predictions, references)[0]
        return {"pearson": _finite_or_zero(pearson), "spearman": _finite_or_zero(spearman)}
