"""``load_volume``: one ``ScanRecord`` -> a uint8 (D, H, W) volume, with the reader its path needs.

The readers are imported on first use, so that listing scans (``scans.scan_kind``) does not pay for nibabel,
pydicom or torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from darnet_pl.data.preprocess import Preprocessing
from darnet_pl.data.readers.scans import ScanError, scan_kind
from darnet_pl.data.records import ScanRecord


def load_volume(record: ScanRecord, prep: Preprocessing, positions: Sequence[int] | None = None) -> np.ndarray:
    """Read, check and preprocess one scan into a uint8 (D, H, W) volume of ``prep.size``.

    ``record.n_slices``, when set (CC-CCII's index), must match the number of slices found. ``positions`` builds a
    slice folder's scan from those slice positions only (a cleaning list's re-ordering); other scans refuse it.
    """
    if record.path is None:
        raise ScanError(record.key, "the record has no path to read")
    kind = scan_kind(record.path)
    if kind == "slices":
        from darnet_pl.data.readers.slices import read_slice_folder

        return read_slice_folder(record.path, prep, expected_slices=record.n_slices, positions=positions)
    if positions is not None:
        raise ScanError(record.path, "slice positions apply to slice folders only")
    from darnet_pl.data.volume_transforms import read_scan  # NIfTI/DICOM: the MONAI transform chain

    return read_scan(record.path, prep, expected_slices=record.n_slices)
