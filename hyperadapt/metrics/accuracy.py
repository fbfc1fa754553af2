"""Accuracy: the fraction of predictions equal to their references.

A standalone `evaluate` metric module: load it with ``evaluate.load("/path/to/accuracy.py")``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Accuracy is the fraction of examples whose predicted class equals the reference class:
(number of correct predictions) / (number of examples). It lies in [0, 1]."""

_INPUTS_DESCRIPTION = """
Args:
    predictions (list of int): Predicted class indices.
    references (list of int): Reference class indices, one per prediction.

Returns:
    accuracy (float): The fraction of correct predictions; 0.0 for no examples.

Example:
    >>> metric = evaluate.load("hyperadapt/metrics/accuracy.py")  # doctest: +SKIP
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])  # doctest: +SKIP
    {'accuracy': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Classification accuracy."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            return {"accuracy": 0.0}
        return {"accuracy": float(np.mean(predictions == references))}
