"""Entity-level precision, recall and F1 of BIO tag sequences (named entities), and token accuracy.

A standalone `evaluate` metric module: load it with ``evaluate.load("/path/to/entity_f1.py")``.
Entities are scored as seqeval does in its default mode: a span counts only when its type and both
its ends match a reference span exactly.
"""

import datasets
import evaluate

_DESCRIPTION = """Entity-level scores of tag sequences in the BIO scheme (B-TYPE begins an entity, I-TYPE
continues it, O is outside any entity). Spans are read from each sequence: a span starts at B-X, or
at I-X that does not continue a span of type X (a lenient reading of a sequence that breaks the
scheme), and runs over the I-X tags that follow. Precision is the share of predicted spans that are
reference spans (same type, same start and end), recall the share of reference spans predicted, F1
their harmonic mean; all are micro-averaged over every span of every sequence. token_accuracy is the
share of tags predicted exactly."""

_INPUTS_DESCRIPTION = """
Args:
    predictions (list of list of str): Predicted tags, one sequence per sentence.
    references (list of list of str): Reference tags, each sequence as long as its prediction.

Returns:
    precision, recall, f1 (float): Micro-averaged over entity spans, in [0, 1]; 0.0 where there is
        nothing to divide by.
    token_accuracy (float): Tags predicted exactly, over all tags.

Example:
    >>> metric = evaluate.load("hyperadapt/metrics/entity_f1.py")  # doctest: +SKIP
    >>> guess, gold = [["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "B-LOC"]]
    >>> metric.compute(predictions=guess, references=gold)  # doctest: +SKIP
    {'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666, 'token_accuracy': 0.6666666666666666}
"""


def spans(tags):
    """The entity spans of one BIO sequence, as a set of ``(type, start, end)`` (end exclusive)."""
    found = set()
    kind, start = None, 0
    for i, tag in enumerate([*tags, "O"]):  # a final O closes the last span
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            found.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return found


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS_DESCRIPTION)
class EntityF1(evaluate.Metric):
    """Entity-level precision, recall and F1 over BIO tag sequences, plus token accuracy."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references):
        correct = predicted = expected = same_tags = tags = 0
        for guess, gold in zip(predictions, references):
            if len(guess) != len(gold):
                raise ValueError(f"a predicted sequence has {len(guess)} tags but its reference {len(gold)}")
            guessed, wanted = spans(guess), spans(gold)
            correct += len(guessed & wanted)
            predicted += len(guessed)
            expected += len(wanted)
            same_tags += sum(g == r for g, r in zip(guess, gold))
            tags += len(gold)
        precision = correct / predicted if predicted else 0.0
        recall = correct / expected if expected else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "token_accuracy": float(same_tags / tags) if tags else 0.0,
        }
