"""Where a flagged shortcut sits in the split: each flagged signal, per class, in every subset of the split.

A shortcut that the test set carries as training does is rewarded by the test metrics; one that only training
carries costs accuracy at test time instead. For each subset, the probe is fitted on the other scans it read
(the split keeps patients apart, so none of them is in the subset) and scores the subset's scans: "the signal, as
learnt from the rest of the data, on this subset", the question a test set asks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from darnet_pl.audit.probes import ProbeResult, class_auc, fit_and_score, summarise


def subset_rows(
    results: Sequence[ProbeResult], subsets: Mapping[str, Sequence[str]], precision: float = 0.95
) -> list[dict[str, Any]]:
    """One row per flagged probe, subset and flagged class (``audit.json`` ``subsets``).

    ``subsets`` maps a subset name (``fold1`` .. ``test``, ``train``) to its scan keys. A row gives the subset's
    scans and those of the class, the class's one-vs-rest AUC there (None where the class or the rest is absent),
    the share of the class identified at the audit's precision and the precision of that identification (None:
    nothing identified), and the signal's per-class summary in that subset.
    """
    rows = []
    for result in results:
        oof, spec = result.out_of_fold, result.spec
        if not result.flagged or oof is None or spec is None:
            continue
        index = {key: i for i, key in enumerate(oof.keys)}
        for subset, keys in subsets.items():
            members = np.array([index[k] for k in keys if k in index], dtype=int)
            if not len(members):
                continue
            rest = np.setdiff1d(np.arange(len(oof.keys)), members)
            n_classes = len(result.classes)
            proba, identified = fit_and_score(oof.model, oof.x, oof.labels, rest, members, n_classes, precision)
            labels = oof.labels[members]
            names = [result.classes[y] for y in labels]
            summary = summarise(spec, [oof.values[i] for i in members], names, result.classes)
            for name in result.flagged_classes:
                c = result.classes.index(name)
                of_class = labels == c
                picked = identified[:, c]
                hits = int((picked & of_class).sum())
                auc = class_auc(labels, proba[:, c], c)
                rows.append(
                    {
                        "probe": result.name,
                        "class": name,
                        "subset": subset,
                        "n_scans": len(members),
                        "n_class": int(of_class.sum()),
                        "auc": None if auc is None else round(auc, 4),
                        "partial": round(hits / int(of_class.sum()), 4) if of_class.any() else None,
                        "partial_precision": round(hits / int(picked.sum()), 4) if picked.any() else None,
                        "summary": summary,
                    }
                )
    return rows
