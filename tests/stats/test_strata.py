"""Metrics within the scans that have a property and those that do not (``darnet_pl.stats.strata``), as the audit
calls it: probs, labels, patient ids and one flag per scan in, plain rows out."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from darnet_pl.stats import stratified_metrics
from tests.helpers.report_jobs import CLASSES, cohort, model_probs, reference_metrics

KEYS = ("2class/auc", "2class/sensitivity", "2class/specificity", "3class/auc_macro", "3class/accuracy")


def shortcut(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A model that is right on flagged scans and guesses on the others; a patient's scans differ in their flag."""
    rows = cohort(30, seed=seed)
    labels = np.array([r[2] for r in rows])
    flags = np.random.default_rng(seed).random(len(rows)) < 0.5
    probs = np.where(flags[:, None], model_probs(rows, seed=1, strength=4.0), model_probs(rows, seed=2, strength=0.0))
    return probs, labels, np.array([r[0] for r in rows]), flags


def test_rows_hold_each_stratums_metrics_and_their_difference() -> None:
    probs, labels, patients, flags = shortcut()
    rows = stratified_metrics(probs, labels, patients, flags, CLASSES, "NCP", n_resamples=200, seed=0)
    assert [row["stratum"] for row in rows] == [True, False, "with - without"]
    for row, mask in zip(rows, (flags, ~flags), strict=False):
        expected = reference_metrics(probs[mask], labels[mask])
        assert row["n_scans"] == mask.sum() and row["n_patients"] == len(set(patients[mask]))
        assert row["support"] == {name: int((labels[mask] == c).sum()) for c, name in enumerate(CLASSES)}
        for key in KEYS:
            assert row["metrics"][key] == pytest.approx(expected[key], abs=1e-12), key
            low, high = row["ci"][key]
            assert low <= row["metrics"][key] <= high and row["ci_valid_resamples"][key] == 200, key
    both = len(set(patients[flags]) & set(patients[~flags]))
    assert both > 0 and rows[0]["n_patients"] + rows[1]["n_patients"] == len(set(patients)) + both
    difference = rows[2]
    for key in KEYS:
        assert difference["metrics"][key] == pytest.approx(rows[0]["metrics"][key] - rows[1]["metrics"][key])
    low, _ = difference["ci"]["2class/auc"]
    assert low > 0.1, "the shortcut is plain: far better with the flag than without, and sure of it"
    json.dumps(rows)  # plain values


def test_an_empty_stratum_is_undefined_not_an_error() -> None:
    probs, labels, patients, _ = shortcut()
    rows = stratified_metrics(probs, labels, patients, np.ones(len(labels), bool), CLASSES, "NCP", n_resamples=20)
    assert rows[1]["n_scans"] == 0 and rows[1]["notes"] == ["no scan in this stratum"]
    assert all(math.isnan(v) for v in rows[1]["metrics"].values())
    assert all(math.isnan(v) for v in rows[2]["ci"]["2class/auc"])
    ncp_free = labels != 1  # no COVID-19 scan among the flagged: its 2-class numbers are undefined, said in a note
    rows = stratified_metrics(probs, labels, patients, ~ncp_free, CLASSES, "NCP", n_resamples=20)
    assert math.isnan(rows[0]["metrics"]["2class/specificity"]) and "NCP" in rows[0]["notes"][0]


def test_refuses_what_is_not_one_flag_per_scan() -> None:
    probs, labels, patients, flags = shortcut()
    with pytest.raises(ValueError, match="one boolean per scan"):
        stratified_metrics(probs, labels, patients, np.where(flags, "yes", "no"), CLASSES, "NCP", n_resamples=0)
    with pytest.raises(ValueError, match="strata flags but"):
        stratified_metrics(probs, labels, patients, flags[:-1], CLASSES, "NCP", n_resamples=0)
    rows = stratified_metrics(probs, labels, patients, flags.astype(int), CLASSES, "NCP", n_resamples=0)
    assert rows[0]["n_scans"] == flags.sum() and all(math.isnan(v) for v in rows[0]["ci"]["2class/auc"])
