"""The local evaluate metric modules, checked against hand-computed values."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hyperadapt.errors import HyperAdaptError
from hyperadapt.metrics import METRIC_DIR, compute_metrics, load_metric, metric_path

# predictions, references, accuracy, macro F1, MCC -- each worked out by hand.
CLASSIFICATION_CASES = [
    pytest.param([0, 1, 1, 0], [0, 1, 1, 0], 1.0, 1.0, 1.0, id="perfect"),
    pytest.param([1, 0, 0, 1], [0, 1, 1, 0], 0.0, 0.0, -1.0, id="all-wrong"),
    # TP=1 FP=1 TN=2 FN=0: MCC = (1*2 - 1*0) / sqrt(2*1*3*2) = 1/sqrt(3); F1 = (4/5 + 2/3) / 2
    pytest.param([1, 1, 0, 0], [1, 0, 0, 0], 0.75, (4 / 5 + 2 / 3) / 2, 1 / math.sqrt(3), id="known-mcc"),
    # constant predictions: MCC undefined -> 0; F1 = (0 + 2/3) / 2
    pytest.param([1, 1, 1, 1], [0, 1, 0, 1], 0.5, 1 / 3, 0.0, id="constant-predictions"),
    # one class everywhere: MCC undefined -> 0, F1 over the one class
    pytest.param([1, 1, 1], [1, 1, 1], 1.0, 1.0, 0.0, id="constant-both"),
    # three classes: t=(2,1,1) p=(1,2,1) c=3 s=4: (12 - 5) / sqrt(10 * 10)
    pytest.param([2, 0, 1, 1], [2, 0, 0, 1], 0.75, 7 / 9, 0.7, id="three-classes"),
    # class 2 is only predicted, class 1 only a reference: both count in the union (F1 0 each)
    pytest.param([0, 2], [0, 1], 0.5, 1 / 3, 0.5, id="label-union"),
]

# predictions, references, pearson, spearman
REGRESSION_CASES = [
    pytest.param([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 1.0, 1.0, id="perfect-linear"),
    pytest.param([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], -1.0, -1.0, id="reversed"),
    # cov 3, sum dx^2 = 42/9, sum dy^2 = 2: r = 9 / sqrt(84)
    pytest.param([1.0, 2.0, 4.0], [1.0, 2.0, 3.0], 9 / math.sqrt(84), 1.0, id="near-linear"),
    # monotone but curved: r = 25 / sqrt(5 * 129), rho = 1
    pytest.param([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0], 25 / math.sqrt(645), 1.0, id="monotone"),
    # a tie: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5); raw r = 3 / sqrt(10)
    pytest.param(
        [1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], 3 / math.sqrt(10), 4.5 / math.sqrt(22.5), id="tie"
    ),
    pytest.param([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], 0.0, 0.0, id="constant-predictions"),
    pytest.param([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], 0.0, 0.0, id="constant-references"),
    pytest.param([1.0], [2.0], 0.0, 0.0, id="single-example"),
]


@pytest.mark.parametrize("predictions, references, accuracy, macro_f1, mcc", CLASSIFICATION_CASES)
def test_classification_modules(predictions, references, accuracy, macro_f1, mcc):
    assert load_metric("accuracy").compute(predictions=predictions, references=references) == {
        "accuracy": pytest.approx(accuracy)
    }
    assert load_metric("macro_f1").compute(predictions=predictions, references=references) == {
        "macro_f1": pytest.approx(macro_f1)
    }
    got = load_metric("matthews_correlation").compute(predictions=predictions, references=references)
    assert got == {"matthews_correlation": pytest.approx(mcc)}


@pytest.mark.parametrize("predictions, references, accuracy, macro_f1, mcc", CLASSIFICATION_CASES)
@pytest.mark.parametrize("task_type", ["sequence_classification", "sentence_pair_classification"])
def test_compute_metrics_classification(task_type, predictions, references, accuracy, macro_f1, mcc):
    got = compute_metrics(task_type, np.array(predictions), references)
    assert got == {
        "accuracy": pytest.approx(accuracy),
        "macro_f1": pytest.approx(macro_f1),
        "matthews_correlation": pytest.approx(mcc),
    }
    assert all(type(value) is float for value in got.values())


@pytest.mark.parametrize("predictions, references, pearson, spearman", REGRESSION_CASES)
def test_correlation(predictions, references, pearson, spearman):
    got = compute_metrics("regression", predictions, references)
    assert got == {"pearson": pytest.approx(pearson), "spearman": pytest.approx(spearman)}
    assert not any(math.isnan(value) for value in got.values())
    direct = load_metric("pearson").compute(predictions=predictions, references=references)
    assert direct == got


def test_add_batch_then_compute():
    metric = load_metric("matthews_correlation")
    metric.add_batch(predictions=[1, 1], references=[1, 0])
    metric.add_batch(predictions=[0, 0], references=[0, 0])
    assert metric.compute()["matthews_correlation"] == pytest.approx(1 / math.sqrt(3))
    # compute() empties the module, so the shared cached instance starts clean again
    assert metric.compute(predictions=[0, 1], references=[0, 1]) == {"matthews_correlation": 1.0}


def test_pearson_and_spearman_share_a_module_and_loads_are_cached():
    assert load_metric("pearson") is load_metric("spearman")
    assert load_metric("accuracy") is load_metric("accuracy")
    assert metric_path("macro_f1") == METRIC_DIR / "f1.py"


def test_evaluate_load_by_path_twice():
    import evaluate

    for _ in range(2):
        module = evaluate.load(str(METRIC_DIR / "accuracy.py"))
        assert module.compute(predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}


def test_combine_gives_flat_keys():
    import evaluate

    combined = evaluate.combine(
        [str(metric_path(name)) for name in ("accuracy", "macro_f1", "matthews_correlation")]
    )
    got = combined.compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    assert set(got) == {"accuracy", "macro_f1", "matthews_correlation"}


def test_unknown_names_and_bad_inputs():
    with pytest.raises(HyperAdaptError, match="accuracy, macro_f1"):
        load_metric("f1_score")
    with pytest.raises(HyperAdaptError, match="task_type"):
        compute_metrics("ranking", [1], [1])
    with pytest.raises(HyperAdaptError, match="2 predictions but 3 references"):
        compute_metrics("regression", [1.0, 2.0], [1.0, 2.0, 3.0])


def test_fresh_process_offline_with_empty_cache(tmp_path: Path):
    """A new process with an empty Hugging Face cache and no network loads every module twice.

    One process only: ``import evaluate`` alone takes several seconds (it imports transformers).
    """
    script = (
        "import evaluate\n"
        "from hyperadapt.metrics import METRIC_FILES, METRIC_DIR, compute_metrics\n"
        "for _ in range(2):\n"
        "    for file in sorted(set(METRIC_FILES.values())):\n"
        "        evaluate.load(str(METRIC_DIR / file))\n"
        "print(compute_metrics('sequence_classification', [0, 1], [0, 1]))\n"
        "print(compute_metrics('regression', [0.0, 1.0], [0.0, 2.0]))\n"
    )
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "'matthews_correlation': 1.0" in done.stdout
    assert "'pearson': 1.0" in done.stdout
    assert (tmp_path / "hf" / "modules" / "evaluate_modules" / "metrics" / "correlation").is_dir()
