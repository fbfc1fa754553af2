"""Matthews correlation coefficient (MCC), for two or more classes.

A standalone `evaluate` metric module: load it with
``evaluate.load("/path/to/matthews_correlation.py")``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """The Matthews correlation coefficient in its multiclass form (Gorodkin's R_K). With
the confusion matrix C, t_k the number of references of class k, p_k the number of predictions of
class k, c the number of correct predictions and s the number of examples:

    MCC = (c * s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) * (s^2 - sum_k t_k^2))

It lies in [-1, 1]: 1 is perfect, 0 is no better than chance. It is 0.0 when undefined (all
references or all predictions in one class)."""

_INPUTS_DESCRIPTION = """
Args:
    predictions (list of int): Predicted class indices.
    references (list of int): Reference class indices, one per prediction.

Returns:
    matthews_correlation (float): MCC in [-1, 1]; 0.0 when undefined or for no examples.

Example:
    >>> metric = evaluate.load("hyperadapt/metrics/matthews_correlation.py")  # doctest: +SKIP
    >>> metric.compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])  # doctest: +SKIP
    {'matthews_correlation': 0.5773502691896258}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS_DESCRIPTION)
class MatthewsCorrelation(evaluate.Metric):
    """Multiclass Matthews correlation coefficient."""

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
            return {"matthews_correlation": 0.0}
        classes, codes = np.unique(np.concatenate([references, predictions]), return_inverse=True)
        true_codes, pred_codes = codes[: references.size], codes[references.size :]
        confusion = np.zeros((classes.size, classes.size), dtype=np.float64)
        np.add.at(confusion, (true_codes, pred_codes), 1.0)
        true_counts = confusion.sum(axis=1)
        pred_counts = confusion.sum(axis=0)
        correct = np.trace(confusion)
        total = confusion.sum()
        numerator = correct * total - np.dot(pred_counts, true_counts)
        denominator = (total**2 - np.dot(pred_counts, pred_counts)) * (
            total**2 - np.dot(true_counts, true_counts)
        )
        if denominator <= 0:
            return {"matthews_correlation": 0.0}
        return {"matthews_correlation": float(numerator / np.sqrt(denominator))}
