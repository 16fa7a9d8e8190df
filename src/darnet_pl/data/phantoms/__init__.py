"""Deterministic synthetic chest-CT phantoms for CP / NCP (COVID-19) / Normal.

The project's built-in default dataset: no download, any volume size, seeded, and hard enough that a
3D CNN has to look at lesion morphology and location (not at global intensity) to classify.

Volume layout and orientation
-----------------------------
Volumes are ``(D, H, W)`` float32 arrays in ``[0, 1]``, intensities as in a lung window (air 0, lung
parenchyma ~0.1-0.2, ground-glass ~0.35-0.5, consolidation / soft tissue ~0.6-0.75, bone ~0.9-1):

* axis 0 (D) is cranio-caudal: slice 0 is at the lung apex (top), the last slice below the lung bases;
* axis 1 (H) is anterior -> posterior: row 0 is the front of the chest, the spine is at the bottom;
* axis 2 (W) is patient right -> patient left: column 0 is the patient's right, as radiologists view
  axial slices (the right lung is on the left of the image, the heart bulges to the image right).

Geometry is defined in continuous patient coordinates and only rasterised at the end, so one phantom
looks the same at every size: ``x`` in ``[-1, 1]`` along W (``x < 0`` is the right lung), ``y`` in
``[-1, 1]`` along H (``y < 0`` is anterior) and ``z`` in ``[0, 1]`` along D. Physical lengths (radii,
vessels) are in x-units (1 x-unit ~ 175 mm, half the field of view); ``params.Z_LEN`` converts z to x-units.

What is simulated
-----------------
Anatomy: body with skin and subcutaneous fat, ribs, two lungs tapering to the apex and carved at the base
by the diaphragm domes, mediastinum, heart, aorta, spine, trachea and main bronchi, and branching
pulmonary vessels. Findings: NCP has several faint, soft, subpleural ground-glass opacities, usually in
both lungs and in the lower / posterior zones; CP has a dense lobar or segmental consolidation in one lung
(often with air bronchograms), sometimes with a small contralateral focus; Normal has none. About one
diseased patient in five is a mild case (few, small, faint lesions). Nuisances: patient size and shape,
in-plane rotation and translation, breathing, lesion progression between scans, a smooth bias field,
global contrast / brightness jitter and Gaussian noise, so that global intensity statistics are useless
as a shortcut. Lesions of mild cases can vanish below ~16x48x48.

Randomness
----------
A patient (anatomy, disease pattern, lesion layout) is drawn from ``default_rng([seed, patient, label,
1])``, a scan of that patient (pose, breathing, lesion progression, contrast) from ``default_rng([seed,
patient, label, 2, scan])`` and its noise from ``default_rng([seed, patient, label, 2, scan, 1])``. A
volume therefore depends only on those numbers and the size, never on which other scans were rendered
before it or in which process. The number of scans of a patient in :func:`synthetic_cohort` comes from
``default_rng([seed, patient, 3])``.
"""

from darnet_pl.data.phantoms.cohort import SyntheticScan, synthetic_cohort
from darnet_pl.data.phantoms.params import CP, NCP, NORMAL
from darnet_pl.data.phantoms.render import render_scan, render_scan_with_lungs

__all__ = ["CP", "NCP", "NORMAL", "SyntheticScan", "render_scan", "render_scan_with_lungs", "synthetic_cohort"]
