"""Undefined metrics are NaN, not 0: a class absent from the labels has no AUC or sensitivity (and no F1 when it is
never predicted either), macro averages are over the classes where the metric is defined (scikit-learn's
``zero_division=np.nan``), ``PaperMetrics`` says so in exactly one warning, and the report's point estimate and
patient bootstrap agree with it."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, recall_score, roc_auc_score
from sklearn.preprocessing import label_binarize

from darnet_pl.metrics import PER_CLASS_INPUTS, PaperMetrics, UndefinedMetricWarning, metric_dict
from darnet_pl.report.writer import write_report
from darnet_pl.stats import as_paper_sees_them, paper_metrics, patient_bootstrap, weighted_metrics
from tests.helpers.report_jobs import cohort, model_probs, write_job

CLASSES = ("CP", "NCP", "Normal")
LABELS = [0, 1, 2]


def _without(absent: int, seed: int = 0, n: int = 120, predict_absent: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels with no scan of class ``absent``; it is never the argmax unless ``predict_absent``."""
    rng = np.random.default_rng(seed)
    present = [c for c in LABELS if c != absent]
    labels = rng.choice(present, size=n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[labels] * rng.random((n, 1))
    logits[:, absent] -= 20.0
    if predict_absent:
        logits[:5, absent] += 40.0  # a few scans predicted as the absent class
    return torch.softmax(torch.tensor(logits), dim=1).numpy(), labels


def _compute(probs: np.ndarray, labels: np.ndarray) -> tuple[dict[str, float], list[warnings.WarningMessage]]:
    metrics = PaperMetrics(CLASSES, "NCP")
    for chunk in np.array_split(np.arange(len(labels)), 3):  # several batches, as in an epoch
        metrics.update(torch.log(torch.tensor(probs[chunk])), torch.tensor(labels[chunk]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = metrics.compute()
    return values, list(caught)


def _sklearn_expected(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """One-vs-rest macro AUC over the classes present; recall and F1 with zero_division=NaN (left out of macros)."""
    pred = probs.argmax(axis=1)
    present = [c for c in LABELS if (labels == c).any()]
    onehot = label_binarize(labels, classes=LABELS)
    return {
        "3class/auc_macro": roc_auc_score(onehot[:, present], probs[:, present], average="macro"),
        "3class/sensitivity_macro": recall_score(labels, pred, labels=LABELS, average="macro", zero_division=np.nan),
        "3class/f1_macro": f1_score(labels, pred, labels=LABELS, average="macro", zero_division=np.nan),
        **{
            f"3class/{CLASSES[c]}/auc": roc_auc_score(labels == c, probs[:, c]) if c in present else math.nan
            for c in LABELS
        },
        **{
            f"3class/{CLASSES[c]}/f1": v
            for c, v in enumerate(f1_score(labels, pred, labels=LABELS, average=None, zero_division=np.nan))
        },
        **{
            f"3class/{CLASSES[c]}/sensitivity": v
            for c, v in enumerate(recall_score(labels, pred, labels=LABELS, average=None, zero_division=np.nan))
        },
    }


def _assert_same(got: dict[str, float], expected: dict[str, float], abs_tol: float = 1e-6) -> None:  # AUCs are float32
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), (key, got[key])
        else:
            assert got[key] == pytest.approx(float(value), abs=abs_tol), key


@pytest.mark.parametrize("seed", [0, 1])
def test_an_absent_class_is_nan_and_the_macros_use_the_classes_present(seed: int) -> None:
    probs, labels = _without(0, seed)
    values, caught = _compute(probs, labels)
    for metric in ("auc", "sensitivity", "f1"):
        assert math.isnan(values[f"3class/CP/{metric}"]), metric
    assert values["3class/CP/specificity"] == 1.0  # every scan is a negative of CP, none predicted CP
    _assert_same(values, _sklearn_expected(probs, labels))
    assert all(math.isfinite(v) for k, v in values.items() if "/CP/" not in k)  # the rest stays defined
    assert len(caught) == 1, [str(w.message) for w in caught]
    (warning,) = caught
    assert issubclass(warning.category, UndefinedMetricWarning) and issubclass(warning.category, UserWarning)
    message = str(warning.message)
    assert "class 'CP' is absent from the labels" in message
    assert "AUC, sensitivity and F1" in message and "NCP, Normal" in message
    assert "NCP'" not in message and "Normal'" not in message  # only the absent class is named as such


def test_an_absent_class_that_is_predicted_has_an_f1_of_zero() -> None:
    probs, labels = _without(2, predict_absent=True)
    values, caught = _compute(probs, labels)
    assert math.isnan(values["3class/Normal/auc"]) and math.isnan(values["3class/Normal/sensitivity"])
    assert values["3class/Normal/f1"] == 0.0  # 2tp / (2tp + fp + fn) = 0 / fp: defined
    _assert_same(values, _sklearn_expected(probs, labels))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "class 'Normal' is absent from the labels: its AUC and sensitivity are undefined (NaN)" in message
    assert "macro AUC and sensitivity use CP, NCP" in message and "F1" not in message


def test_an_absent_positive_class_leaves_the_two_class_block_undefined() -> None:
    probs, labels = _without(1)
    values, caught = _compute(probs, labels)
    for key in ("2class/auc", "2class/sensitivity", "2class/f1"):
        assert math.isnan(values[key]), key
    assert values["2class/specificity"] == values["3class/NCP/specificity"] == 1.0
    assert values["2class/accuracy"] == 1.0
    _assert_same(values, _sklearn_expected(probs, labels))
    assert len(caught) == 1 and "'NCP'" in str(caught[0].message) and "2class" in str(caught[0].message)


def test_a_single_class_has_no_auc_at_all() -> None:
    labels = np.ones(12, dtype=np.int64)
    probs = torch.softmax(torch.tensor(np.random.default_rng(0).normal(size=(12, 3))), dim=1).numpy()
    values, caught = _compute(probs, labels)
    assert math.isnan(values["3class/auc_macro"]) and math.isnan(values["2class/auc"])
    assert math.isnan(values["3class/NCP/specificity"])
    assert values["3class/accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == 1)))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "class 'NCP' is the only class in the labels" in message and "macro AUC is undefined too" in message


def test_all_classes_present_gives_no_warning_and_the_values_of_scikit_learn() -> None:
    probs, labels = _without(0, seed=3)
    labels[:40] = 0  # every class present; CP is never predicted (its precision is 0/0) but stays defined
    values, caught = _compute(probs, labels)
    assert not caught, [str(w.message) for w in caught]
    assert all(math.isfinite(v) for v in values.values())
    assert values["3class/CP/f1"] == 0.0 and values["3class/CP/sensitivity"] == 0.0
    expected = _sklearn_expected(probs, labels)
    expected["3class/auc_macro"] = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    _assert_same(values, expected)


def test_metric_dict_names_batches_and_single_evaluations_alike() -> None:
    rng = np.random.default_rng(0)
    per_class = {name: rng.random((4, 3)) for name in PER_CLASS_INPUTS}
    per_class["auc"][1, 0] = np.nan
    batch = metric_dict(per_class, CLASSES, "NCP", accuracy=rng.random(4))
    assert all(v.shape == (4,) for v in batch.values())
    assert batch["3class/auc_macro"][1] == pytest.approx(per_class["auc"][1, 1:].mean())
    assert batch["3class/f1_macro"][0] == pytest.approx(per_class["f1"][0].mean())
    assert np.array_equal(batch["2class/accuracy"], per_class["accuracy_ovr"][:, 1])
    single = metric_dict({k: torch.tensor(v[2]) for k, v in per_class.items()}, CLASSES, "NCP", accuracy=0.5)
    assert single.keys() == batch.keys()
    assert all(float(single[k]) == batch[k][2] for k in single if k != "3class/accuracy")
    with pytest.raises(ValueError, match="positive class"):
        metric_dict(per_class, CLASSES, "COVID", accuracy=0.5)
    with pytest.raises(ValueError, match="last axis"):
        metric_dict(per_class, CLASSES[:2], "NCP", accuracy=0.5)


def test_the_bootstrap_agrees_with_paper_metrics_on_a_set_with_an_absent_class() -> None:
    scans = [s for s in cohort(30, seed=2) if s[2] != 0]  # no CP patient
    labels = np.array([s[2] for s in scans])
    patients = np.array([s[0] for s in scans])
    probs = model_probs(scans, seed=5, strength=1.5)
    probs[:, 0] *= 1e-3  # CP is never the argmax: its F1 is undefined too
    probs /= probs.sum(axis=1, keepdims=True)
    point, caught = _compute(probs, labels)
    assert len(caught) == 1 and "'CP'" in str(caught[0].message)
    # the report's point estimate is PaperMetrics, and the bootstrap's own computation at unit weights equals it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the report notes the absent class itself: no warning from here
        report_point = paper_metrics(probs, labels, CLASSES, "NCP")
        unit = weighted_metrics(as_paper_sees_them(probs), labels, np.ones((1, len(labels))), CLASSES, "NCP")
        boot = patient_bootstrap(probs, labels, patients, CLASSES, "NCP", n_resamples=400, seed=1)
    undefined = {key for key, value in point.items() if math.isnan(value)}
    assert undefined == {"3class/CP/auc", "3class/CP/sensitivity", "3class/CP/f1"}
    for key, value in point.items():
        np.testing.assert_allclose(report_point[key], value, atol=1e-9, err_msg=key)
        np.testing.assert_allclose(unit[key][0], value, atol=1e-6, err_msg=key)
        low, high = boot.intervals[key]
        if key in undefined:
            assert math.isnan(low) and math.isnan(high) and boot.n_valid[key] == 0, key
        else:
            assert math.isfinite(low) and math.isfinite(high) and low <= value + 1e-12 and value <= high + 1e-12, key
            assert boot.n_valid[key] == 400, key


def test_resamples_without_a_rare_class_are_left_out_of_its_interval() -> None:
    scans = cohort(30, seed=4)
    cp = sorted({s[0] for s in scans if s[2] == 0})[:2]  # keep two CP patients: often none is drawn
    scans = [s for s in scans if s[2] != 0 or s[0] in cp]
    labels = np.array([s[2] for s in scans])
    patients = np.array([s[0] for s in scans])
    probs = model_probs(scans, seed=6, strength=1.5)
    boot = patient_bootstrap(probs, labels, patients, CLASSES, "NCP", n_resamples=500, seed=0)
    assert 0 < boot.n_valid["3class/CP/auc"] < 500
    assert boot.n_valid["3class/auc_macro"] == boot.n_valid["3class/NCP/auc"] == 500
    for key in ("3class/CP/auc", "3class/CP/sensitivity", "3class/auc_macro", "3class/sensitivity_macro"):
        assert all(math.isfinite(x) for x in boot.intervals[key]), key


def _strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_report_of_a_test_set_without_a_class_is_strict_json(tmp_path: Path) -> None:
    scans = [s for s in cohort(12, seed=7) if s[2] != 0]
    for fold in range(2):
        probs = model_probs(scans, seed=fold)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            write_job(tmp_path / f"fold{fold}", "dual", fold, probs, scans, seed=fold)
    result = write_report(tmp_path, n_bootstrap=50, make_plots=False)
    report = _strict((tmp_path / "report" / "report.json").read_text())
    ensemble = report["groups"][0]["ensemble"]
    assert ensemble["metrics"]["3class/CP/auc"] is None and ensemble["metrics"]["3class/CP/sensitivity"] is None
    assert isinstance(ensemble["metrics"]["3class/auc_macro"], float)
    assert any("CP" in note for note in ensemble["notes"])
    assert result.report["groups"][0]["ensemble"]["n_scans"] == len(scans)
    for fold in report["groups"][0]["fold_metrics"].values():  # fold means over the folds where it is defined
        assert fold["mean"] is None or math.isfinite(fold["mean"])
