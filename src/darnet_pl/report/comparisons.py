"""Variants of one experiment compared on the same test scans: an ablation's purpose is the difference between its
variants, not only their list.

Each variant's fold ensemble is compared with the full DARNet's (variant ``dual``) of the same experiment, or with
every other variant of it (``all_pairs``), by ``darnet_pl.stats.paired_comparison``: the difference A - B of the
AUCs (two-class and K-class macro) and of the accuracy, each with a paired patient-level bootstrap interval, and
DeLong's test for the AUC differences. A pair is formed only within one experiment (``Group.experiment``: the same
task, condition, other overrides and data set), never across data sets or settings, and only on the scans both
ensembles were tested on (joined on patient and scan id; a note says when that is not all of either's).

A is the variant earlier in the paper's order (none, ca, da, dual), B the later, so that against ``dual`` the
difference is what the ablated attention costs (negative: worse without it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from darnet_pl.report.collect import Group
from darnet_pl.report.ensemble import FoldEnsemble
from darnet_pl.report.tables import comparisons_csv, comparisons_markdown, comparisons_notes, method_name
from darnet_pl.stats import PairedComparison, paired_comparison

REFERENCE_VARIANT = "dual"
FILE_STEM = "comparisons"


@dataclass
class Contender:
    """One row group's fold ensemble, as compared."""

    method: str
    group: Group
    ensemble: FoldEnsemble


@dataclass
class Comparisons:
    records: list[dict[str, Any]]  # one plain dict per pair (report.json "comparisons", W&B)
    notes: list[str] = field(default_factory=list)

    def files(self, positive_class: str) -> dict[str, bytes]:
        """``comparisons.md`` (the table and what its numbers are) and ``comparisons.csv``; none without pairs."""
        if not self.records:
            return {}
        notes = comparisons_notes(self.records) + self.notes
        return {
            f"{FILE_STEM}.md": comparisons_markdown(self.records, positive_class, notes).encode(),
            f"{FILE_STEM}.csv": comparisons_csv(self.records, positive_class).encode(),
        }

    def summary_lines(self, positive_class: str) -> list[str]:
        """The table for the command's output, and the notes."""
        lines = [f"note: {note}" for note in self.notes]
        if self.records:
            table = comparisons_markdown(self.records, positive_class).rstrip()
            lines = ["", f"Variants compared (A − B; {FILE_STEM}.md says how):", table, *lines]
        return lines


def _aligned(a: FoldEnsemble, b: FoldEnsemble) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Both ensembles' probabilities on the scans both have (same patient, scan and label), in A's order."""
    index = {key: i for i, key in enumerate(zip(b.patient_ids.tolist(), b.scan_ids.tolist(), strict=True))}
    rows_a, rows_b = [], []
    mislabelled = 0
    for i, key in enumerate(zip(a.patient_ids.tolist(), a.scan_ids.tolist(), strict=True)):
        j = index.get(key)
        if j is None:
            continue
        if a.labels[i] != b.labels[j]:
            mislabelled += 1
            continue
        rows_a.append(i)
        rows_b.append(j)
    notes = []
    if len(rows_a) < max(a.n_scans, b.n_scans):
        notes.append(f"compared on the {len(rows_a)} test scans both ensembles have (A has {a.n_scans}, B {b.n_scans})")
    if mislabelled:
        notes.append(f"{mislabelled} scans carry different labels in the two ensembles; left out")
    ia, ib = np.array(rows_a, dtype=np.int64), np.array(rows_b, dtype=np.int64)
    return a.probs[ia], b.probs[ib], a.labels[ia], a.patient_ids[ia], notes


def pairs(
    contenders: Sequence[Contender], all_pairs: bool = False
) -> tuple[list[tuple[Contender, Contender]], list[str]]:
    """The pairs (A, B) to compare, in the contenders' order, and a note for an experiment whose variants have no
    ``dual`` to be compared with (unless ``all_pairs``)."""
    experiments: dict[tuple[object, ...], list[Contender]] = {}
    for contender in contenders:
        experiments.setdefault(contender.group.experiment, []).append(contender)
    found: list[tuple[Contender, Contender]] = []
    notes: list[str] = []
    for members in experiments.values():
        if len(members) < 2:
            continue
        if all_pairs:
            found += list(combinations(members, 2))
            continue
        reference = next((c for c in members if c.group.variant == REFERENCE_VARIANT), None)
        if reference is None:
            names = ", ".join(c.method for c in members)
            notes.append(
                f"{names}: no {method_name(REFERENCE_VARIANT)} ({REFERENCE_VARIANT}) row of the same experiment to "
                "compare them with (darnet-report --all-pairs compares every pair)"
            )
            continue
        found += [(c, reference) for c in members if c is not reference]
    return found, notes


def _record(a: Contender, b: Contender, result: PairedComparison, notes: list[str]) -> dict[str, Any]:
    group = a.group
    return {
        "a": a.method,
        "b": b.method,
        "variant_a": group.variant,
        "variant_b": b.group.variant,
        "task_names": [name for name in group.task_names if name],
        "condition": group.condition or None,
        "dataset": group.dataset,
        "overrides": list(group.compared),
        "difference": "a - b",
        **result.as_dict(),
        "notes": [*notes, *result.notes],
    }


def compare_variants(
    contenders: Sequence[Contender],
    class_names: Sequence[str],
    positive_class: str,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    all_pairs: bool = False,
) -> Comparisons:
    """Every pair of ``pairs`` compared on their common test scans (see the module's docstring)."""
    found, notes = pairs(contenders, all_pairs)
    records = []
    for a, b in found:
        probs_a, probs_b, labels, patient_ids, pair_notes = _aligned(a.ensemble, b.ensemble)
        if not len(labels):
            notes.append(f"{a.method} and {b.method}: no test scan in common; not compared")
            continue
        result = paired_comparison(
            probs_a, probs_b, labels, patient_ids, class_names, positive_class, n_resamples, seed, level
        )
        records.append(_record(a, b, result, pair_notes))
    return Comparisons(records, notes)
