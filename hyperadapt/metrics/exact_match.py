"""Exact match: the fraction of generated answers equal to their reference answers, compared after
a light normalisation (case, surrounding whitespace and punctuation, runs of spaces).

A standalone `evaluate` metric module: load it with ``evaluate.load("/path/to/exact_match.py")``.
"""

import string

import datasets
import evaluate

_DESCRIPTION = """Exact match compares each generated answer with its reference after lower-casing,
collapsing runs of whitespace and stripping whitespace and punctuation from both ends, so that
"Paris." matches "paris". It is the fraction of answers that match, in [0, 1]."""

_INPUTS_DESCRIPTION = """
Args:
    predictions (list of str): Generated answers.
    references (list of str): Reference answers, one per prediction.

Returns:
    exact_match (float): The fraction of predictions equal to their references; 0.0 for no examples.

Example:
    >>> metric = evaluate.load("hyperadapt/metrics/exact_match.py")  # doctest: +SKIP
    >>> metric.compute(predictions=["Paris.", "rome"], references=["paris", "Madrid"])  # doctest: +SKIP
    {'exact_match': 0.5}
"""

_EDGES = string.punctuation + string.whitespace


def normalise(text: str) -> str:
    return " ".join(text.lower().split()).strip(_EDGES)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    """Normalised exact match of generated text."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        if not predictions:
            return {"exact_match": 0.0}
        same = sum(normalise(p) == normalise(r) for p, r in zip(predictions, references))
        return {"exact_match": same / len(predictions)}
