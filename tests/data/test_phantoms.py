"""Tests of the synthetic chest-CT phantoms (darnet_pl.data.phantoms).

Everything renders small volumes; one cohort of 240 scans is rendered once per module and shared by the
class-finding and "no intensity shortcut" tests.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from darnet_pl.data.phantoms import (
    SyntheticScan,
    render_scan,
    render_scan_with_lungs,
    synthetic_cohort,
)
from darnet_pl.data.records import CLASS_NAMES

SMALL = (16, 64, 64)
CP, NCP, NORMAL = 0, 1, 2


def _scan(label: int, patient: int, scan: int = 0) -> SyntheticScan:
    name = CLASS_NAMES[label]
    return SyntheticScan(f"syn-{name}-{patient:04d}", f"syn-{name}-{patient:04d}-s{scan}", label, patient, scan)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.fixture(scope="module")
def cohort_stats() -> dict[str, np.ndarray]:
    """Per-scan summaries of 80 patients per class (one scan each) at 16x64x64."""
    rows = defaultdict(list)
    half = SMALL[2] // 2
    for scan in synthetic_cohort(80, (1, 1), seed=0):
        volume, mask = render_scan(scan, SMALL)
        rows["label"].append(scan.label)
        rows["mean"].append(volume.mean())
        rows["percentiles"].append(np.percentile(volume, [10, 50, 90, 99]))
        rows["lesion_voxels"].append(mask.sum())
        # W runs patient right -> left: columns < W/2 are the right lung.
        rows["right"].append(mask[:, :, :half].sum())
        rows["left"].append(mask[:, :, half:].sum())
        rows["lesion_intensity"].append(volume[mask].mean() if mask.any() else np.nan)
    return {key: np.asarray(value) for key, value in rows.items()}


# -- cohort ----------------------------------------------------------------------------------------


def test_class_names() -> None:
    assert CLASS_NAMES == ("CP", "NCP", "Normal")


def test_cohort_groups_scans_by_patient() -> None:
    scans = synthetic_cohort(20, (1, 3), seed=0)
    assert len({s.scan_id for s in scans}) == len(scans)
    by_patient = defaultdict(list)
    for s in scans:
        by_patient[s.patient_id].append(s)
        assert s.patient_id == f"syn-{CLASS_NAMES[s.label]}-{s.patient_index:04d}"
        assert s.scan_id == f"{s.patient_id}-s{s.scan_index}"
    assert len(by_patient) == 60
    for patient_scans in by_patient.values():
        assert len({s.label for s in patient_scans}) == 1  # a patient never crosses classes
        assert len({s.patient_index for s in patient_scans}) == 1
        assert sorted(s.scan_index for s in patient_scans) == list(range(len(patient_scans)))
    counts = [len(v) for v in by_patient.values()]
    assert min(counts) >= 1 and max(counts) <= 3
    assert sum(c > 1 for c in counts) >= 10 and 1 in counts
    indices = {s.patient_index: s.label for s in scans}
    assert len(indices) == 60  # unique across classes
    assert sorted(np.bincount(list(indices.values()))) == [20, 20, 20]


def test_cohort_is_deterministic_and_nested() -> None:
    assert synthetic_cohort(10, (1, 3), seed=3) == synthetic_cohort(10, (1, 3), seed=3)
    small, large = synthetic_cohort(5, (1, 3), seed=3), synthetic_cohort(10, (1, 3), seed=3)
    assert set(small) <= set(large)
    assert synthetic_cohort(30, (1, 3), seed=3) != synthetic_cohort(30, (1, 3), seed=4)
    assert {len(synthetic_cohort(4, (2, 2)))} == {24}
    with pytest.raises(ValueError):
        synthetic_cohort(4, (3, 1))


# -- rendering: determinism, shapes ----------------------------------------------------------------


def test_render_is_deterministic_and_order_independent() -> None:
    scans = [_scan(CP, 0), _scan(NCP, 1, 1), _scan(NORMAL, 2, 2)]
    first = [render_scan(s, SMALL, seed=7) for s in scans]
    render_scan(_scan(NCP, 4), (8, 32, 32), seed=7)  # unrelated work in between must not matter
    again = [render_scan(s, SMALL, seed=7) for s in reversed(scans)][::-1]
    for (v1, m1), (v2, m2) in zip(first, again, strict=True):
        assert np.array_equal(v1, v2) and np.array_equal(m1, m2)
    # A different seed, scan or patient gives a different volume.
    v_seed, _ = render_scan(scans[1], SMALL, seed=8)
    v_scan, _ = render_scan(_scan(NCP, 1, 0), SMALL, seed=7)
    v_patient, _ = render_scan(_scan(NCP, 4, 1), SMALL, seed=7)
    for other in (v_seed, v_scan, v_patient):
        assert not np.array_equal(first[1][0], other)


def test_render_leaves_global_rng_alone() -> None:
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    render_scan(_scan(CP, 3), (8, 32, 32))
    assert np.random.rand() == expected


@pytest.mark.parametrize("size", [SMALL, (12, 40, 56)])
def test_shapes_dtype_range_and_masks(size: tuple[int, int, int]) -> None:
    for patient in range(6):
        label = patient % 3
        volume, mask = render_scan(_scan(label, patient), size)
        assert volume.shape == size and volume.dtype == np.float32
        assert mask.shape == size and mask.dtype == np.bool_
        assert np.isfinite(volume).all() and volume.min() >= 0.0 and volume.max() <= 1.0
        assert mask.any() == (label != NORMAL), CLASS_NAMES[label]


def test_every_diseased_scan_has_a_lesion(cohort_stats: dict[str, np.ndarray]) -> None:
    label, voxels = cohort_stats["label"], cohort_stats["lesion_voxels"]
    assert (voxels[label == NORMAL] == 0).all()
    assert (voxels[label != NORMAL] > 0).all()


def test_orientation_matches_the_documented_layout() -> None:
    """Apex at slice 0, no lung below the bases, spine posterior (last rows), heart towards patient left."""
    volume, _, lungs = render_scan_with_lungs(_scan(NORMAL, 2), (32, 64, 64))
    area = lungs.sum(axis=(1, 2))
    assert area[2] < 0.5 * area.max() and area[-1] == 0 and area.argmax() > 4
    # The vertebrae (the brightest structure, constant over depth) are posterior, at the midline.
    mid = volume[8:24].mean(axis=0)
    assert mid[40:, 28:36].max() > mid[:24, 28:36].max() + 0.1
    assert mid[40:, 28:36].max() > mid[40:, :16].max() + 0.1
    # The heart bulges to the patient's left (image right), so the right lung (image left) is larger.
    assert lungs[:, :, :32].sum() > lungs[:, :, 32:].sum()
    # Air outside the body is the darkest; the lungs are dark too but brighter than air.
    assert volume[16, :3, :3].mean() < volume[16][lungs[16]].mean()


def test_same_phantom_at_every_size() -> None:
    """Rendering at twice the resolution and pooling 2x2x2 blocks gives nearly the same volume and lesions."""
    scan = _scan(CP, 6)
    small, small_mask = render_scan(scan, SMALL)
    large, large_mask = render_scan(scan, (32, 128, 128))
    pooled = large.reshape(16, 2, 64, 2, 64, 2).mean(axis=(1, 3, 5))
    assert np.corrcoef(small.ravel(), pooled.ravel())[0, 1] > 0.9
    pooled_mask = large_mask.reshape(16, 2, 64, 2, 64, 2).mean(axis=(1, 3, 5)) > 0.5
    assert _dice(small_mask, pooled_mask) > 0.7


# -- patient structure -----------------------------------------------------------------------------


def test_scans_of_a_patient_share_anatomy_and_findings() -> None:
    """Follow-up scans move and change a little; other patients of the same class differ much more.

    The nearest neighbour of every scan (by lung-mask overlap) is another scan of the same patient: this is
    why splits must be made by patient, not by scan.
    """
    size = (16, 48, 48)
    keys = [(patient, s) for patient in (1, 4, 7, 10, 13) for s in range(3)]  # NCP patients, 3 scans each
    renders = {key: render_scan_with_lungs(_scan(NCP, *key), size) for key in keys}
    lung = {key: renders[key][2] for key in keys}
    lesion = {key: renders[key][1] for key in keys}
    pairs = [(a, b) for a in keys for b in keys if a < b]
    same = [(_dice(lung[a], lung[b]), _dice(lesion[a], lesion[b])) for a, b in pairs if a[0] == b[0]]
    other = [(_dice(lung[a], lung[b]), _dice(lesion[a], lesion[b])) for a, b in pairs if a[0] != b[0]]
    same_lung, same_lesion = np.mean(same, axis=0)
    other_lung, other_lesion = np.mean(other, axis=0)
    assert same_lung > 0.9 and same_lung > other_lung + 0.08
    assert same_lesion > 0.5 and same_lesion > other_lesion + 0.3
    for a in keys:
        nearest = max((b for b in keys if b != a), key=lambda b: _dice(lung[a], lung[b]))
        assert nearest[0] == a[0]
    # ... yet no two scans are the same image.
    volumes = [renders[key][0] for key in keys]
    assert all(not np.array_equal(volumes[0], v) for v in volumes[1:])


# -- class-specific findings -----------------------------------------------------------------------


def test_ncp_lesions_are_bilateral(cohort_stats: dict[str, np.ndarray]) -> None:
    ncp = cohort_stats["label"] == NCP
    bilateral = (cohort_stats["right"][ncp] > 0) & (cohort_stats["left"][ncp] > 0)
    assert bilateral.mean() >= 0.8


def test_cp_lesions_are_mostly_unilateral(cohort_stats: dict[str, np.ndarray]) -> None:
    cp = cohort_stats["label"] == CP
    right, left = cohort_stats["right"][cp], cohort_stats["left"][cp]
    dominant = np.maximum(right, left) / (right + left)
    assert (dominant >= 0.8).mean() >= 0.8
    bilateral = (right > 0) & (left > 0)
    assert 0 < bilateral.mean() < 0.5  # a contralateral focus exists but is the exception


def test_cp_lesions_are_denser_than_ncp_lesions(cohort_stats: dict[str, np.ndarray]) -> None:
    intensity, label = cohort_stats["lesion_intensity"], cohort_stats["label"]
    cp, ncp = intensity[label == CP], intensity[label == NCP]
    assert np.mean(cp) > np.mean(ncp) + 0.1
    assert 0.3 < np.median(ncp) < 0.5 and 0.5 < np.median(cp) < 0.75


def test_mean_intensity_is_not_a_shortcut(cohort_stats: dict[str, np.ndarray]) -> None:
    """Global intensity statistics alone must be far from enough (the lesions have to be looked at)."""
    label = cohort_stats["label"]
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    model = LogisticRegression(max_iter=2000)
    mean = cohort_stats["mean"][:, None]
    accuracy = (cross_val_predict(model, mean, label, cv=folds) == label).mean()
    assert accuracy < 0.55  # chance is 1/3
    for c in range(3):  # any single threshold on the mean, one class against the rest
        auc = roc_auc_score(label == c, mean[:, 0])
        assert max(auc, 1.0 - auc) < 0.75, CLASS_NAMES[c]
    histogram = np.column_stack([mean, cohort_stats["percentiles"]])
    accuracy = (cross_val_predict(model, histogram, label, cv=folds) == label).mean()
    assert accuracy < 0.6


def test_rendering_is_fast() -> None:
    scans = [_scan(p % 3, p) for p in range(6)]
    for scan in scans:  # warm the per-patient cache, as a data loader's later epochs would
        render_scan(scan, SMALL)
    start = time.perf_counter()
    for scan in scans:
        render_scan(scan, SMALL)
    assert (time.perf_counter() - start) / len(scans) < 0.25  # ~0.02 s on one core; generous for CI


def test_a_planted_shortcut_marks_its_share_of_one_class_and_nothing_else() -> None:
    from darnet_pl.data.sources.synthetic import SyntheticSource

    size = (8, 32, 32)
    clean = SyntheticSource(10, (1, 2), size, seed=3)
    frame = SyntheticSource(10, (1, 2), size, seed=3, shortcut={"class_name": "NCP", "share": 0.3, "kind": "frame"})
    flags = frame.planted_flags()
    marked = {r.patient_id for r in frame.records() if flags[r.key]}
    assert clean.planted_flags() == {} and "shortcut" not in clean.describe()
    assert frame.describe()["shortcut"] == {"class_name": "NCP", "share": 0.3, "kind": "frame"}
    assert len(marked) == 3 and all(p.startswith("syn-NCP-") for p in marked)  # 30% of 10 patients
    assert all(flags[r.key] == (r.patient_id in marked) for r in frame.records())  # every scan of a patient
    plain, framed = clean.volume_loader(), frame.volume_loader()
    for record in frame.records()[:12]:
        a, b = plain(record), framed(record)
        if flags[record.key]:
            ring = np.ones(size[1:], dtype=bool)
            ring[2:-2, 2:-2] = False  # 1/16 of 32 voxels
            assert (b[:, ring] == 1.0).all() and np.array_equal(a[:, ~ring], b[:, ~ring])
        else:
            assert np.array_equal(a, b)


def test_a_segmented_shortcut_blacks_out_all_but_the_lungs() -> None:
    from darnet_pl.data.phantoms.shortcut import PlantedShortcut

    scan = _scan(NORMAL, 2)
    volume, _, lungs = render_scan_with_lungs(scan, (8, 32, 32))
    shortcut = PlantedShortcut("Normal", 1.0, "segmented")
    assert shortcut.marks(NORMAL, 2) and not shortcut.marks(CP, 0)
    segmented = shortcut.apply(volume, lungs)
    assert (segmented[~lungs] == 0).all() and np.array_equal(segmented[lungs], volume[lungs]) and lungs.any()


@pytest.mark.parametrize(
    ("settings", "names"),
    [({"class_name": "Cat"}, "class_name='Cat'"), ({"class_name": "CP", "share": 0}, "share=0"),
     ({"class_name": "CP", "kind": "dots"}, "kind='dots'"), ({"class_name": "CP", "colour": 1}, "shortcut.colour")],
)  # fmt: skip
def test_a_wrong_shortcut_setting_names_the_key(settings: dict, names: str) -> None:
    from darnet_pl.data.sources.synthetic import SyntheticSource

    with pytest.raises(ValueError, match=names.replace("(", r"\(")):
        SyntheticSource(2, (1, 1), (8, 32, 32), shortcut=settings)
