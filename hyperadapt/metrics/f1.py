"""Macro F1: the unweighted mean over classes of each class's F1 score.

A standalone `evaluate` metric module: load it with ``evaluate.load("/path/to/f1.py")``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Macro-averaged F1. For each class c, F1 = 2 TP / (2 TP + FP + FN), the harmonic mean
of its precision and recall; macro F1 is the plain mean of these over the classes that occur in the
references or the predictions, so every such class counts the same however rare it is."""

_INPUTS_DESCRIPTION = """
Args:
    predictions (list of int): Predicted class indices.
    references (list of int): Reference class indices, one per prediction.

Returns:
    macro_f1 (float): Mean per-class F1 over the union of classes in references and predictions,
        in [0, 1]; 0.0 for no examples.

Example:
    >>> metric = evaluate.load("hyperadapt/metrics/f1.py")  # doctest: +SKIP
    >>> metric.compute(predictions=[0, 0, 1], references=[0, 1, 1])  # doctest: +SKIP
    {'macro_f1': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS_DESCRIPTION)
class MacroF1(evaluate.Metric):
    """Macro-averaged F1 over the classes present in references or predictions."""

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
            return {"macro_f1": 0.0}
        scores = []
        for cls in np.union1d(predictions, references):
            true_pos = np.sum((predictions == cls) & (references == cls))
            false_pos = np.sum((predictions == cls) & (references != cls))
            false_neg = np.sum((predictions != cls) & (references == cls))
            # The class occurs in one of the arrays, so the denominator is positive.
            scores.append(2 * true_pos / (2 * true_pos + false_pos + false_neg))
        return {"macro_f1": float(np.mean(scores))}
