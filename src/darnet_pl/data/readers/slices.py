"""A scan stored as a folder of numbered 8-bit slice images (CC-CCII's format).

Decoding dominates the cost of a scan (a 512x512 PNG takes 1-2 ms, resizing it a fraction of that), so with
``linear``/``nearest`` depth interpolation the fast reader decodes only the slices the depth resampling samples,
each once, and resizes it in-plane right away. Every slice's header is still checked (a few microseconds each),
so a folder with a non-image, a 16-bit slice or mixed slice sizes is refused even where those slices would not
be sampled. Damaged pixel data is found only in the slices that are decoded; an undecoded slice contributes
nothing to the volume. With ``antialias`` (the authors' low-pass filtered resize) every slice contributes, so
every slice is decoded, on several threads (``preprocess.decode_threads``; Pillow decodes without the GIL).

16-bit slices are refused, not rescaled: slice folders are expected to hold windowed 8-bit pictures, and there
is no way to know how a 16-bit one was scaled. Such data should come as NIfTI or DICOM in Hounsfield units.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from darnet_pl.data.preprocess import Preprocessing, resample_planes, resize_volume_reference
from darnet_pl.data.readers.scans import ScanError, check_slice_size, is_ignored, is_slice_image
from darnet_pl.utils.file_kinds import not_regular

_NUMBER = re.compile(r"[0-9]+")
_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def list_slices(folder: str | os.PathLike[str]) -> list[Path]:
    """The slice files of a scan folder in numeric order (``2.png`` before ``10.png``).

    Refuses a folder without slices, with files that are not slice images, with names that are not numbers,
    or with a number used twice (``1.png`` and ``01.jpg``) - any of these means the order cannot be trusted.
    """
    folder = Path(folder)
    try:
        listed = [entry for entry in os.scandir(folder) if not is_ignored(entry.name)]
    except OSError as exc:
        raise ScanError(folder, f"cannot list the folder ({exc.strerror or exc})") from None
    for entry in listed:  # a FIFO named 7.png would block the reader for ever
        if (cause := not_regular(entry.path)) is not None:
            raise ScanError(folder, f"{entry.name} is {cause}")
    entries = [entry for entry in listed if entry.is_file()]
    others = sorted(entry.name for entry in entries if not is_slice_image(entry.name))
    if others:
        raise ScanError(
            folder, f"unexpected file(s) {_some(others)}: a slice folder holds only numbered .png/.jpg images"
        )
    if not entries:
        raise ScanError(folder, "empty scan folder: no slice images")
    numbered: list[tuple[int, Path]] = []
    bad = []
    for entry in entries:
        stem = entry.name.rsplit(".", 1)[0]
        if _NUMBER.fullmatch(stem):
            numbered.append((int(stem), Path(entry.path)))
        else:
            bad.append(entry.name)
    if bad:
        raise ScanError(
            folder,
            f"non-numeric slice name(s) {_some(sorted(bad))}: slices must be named by their number (12.png)",
        )
    numbered.sort()
    repeated = [n for n, count in Counter(n for n, _ in numbered).items() if count > 1]
    if repeated:
        names = sorted(p.name for n, p in numbered if n == repeated[0])
        raise ScanError(folder, f"slice number {repeated[0]} appears more than once ({', '.join(names)})")
    return [path for _, path in numbered]


def probe_slice(path: Path) -> tuple[int, int]:
    """(width, height) of a slice from its header, refusing what is not a readable 8-bit image."""
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
    except UnidentifiedImageError:
        raise ScanError(path, "damaged slice or not an image (unrecognised file content)") from None
    except OSError as exc:
        raise ScanError(path, f"unreadable slice ({exc.strerror or exc})") from None
    if mode.startswith("I;16") or _png_bit_depth(path) == 16:
        kind = f"mode {mode}" if mode.startswith("I;16") else f"16-bit PNG read as {mode}"
        raise ScanError(
            path,
            f"16-bit slice ({kind}) refused: slice folders hold 8-bit images; "
            "give 16-bit or Hounsfield-unit data as NIfTI or DICOM",
        )
    if mode not in _EIGHT_BIT_MODES:
        raise ScanError(path, f"unsupported slice image mode {mode}: expected an 8-bit grayscale or RGB image")
    return size


def decode_slice(path: Path) -> np.ndarray:
    """Fully decode one slice as a uint8 (height, width) array (RGB slices are converted by luminance)."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image if image.mode == "L" else image.convert("L"))
    except UnidentifiedImageError:
        raise ScanError(path, "damaged slice or not an image (unrecognised file content)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ScanError(path, f"damaged slice, cannot decode ({exc})") from None


def checked_slices(folder: str | os.PathLike[str], expected_slices: int | None = None) -> list[Path]:
    """``list_slices`` plus the checks that need every header: count, bit depth, one slice size."""
    paths = list_slices(folder)
    if expected_slices is not None and len(paths) != expected_slices:
        raise ScanError(folder, f"slice count mismatch: the index says {expected_slices}, the folder has {len(paths)}")
    if len(paths) < 2:
        raise ScanError(folder, f"a single slice ({paths[0].name}) is not a 3D scan")
    sizes: dict[tuple[int, int], list[str]] = {}
    for path in paths:
        sizes.setdefault(probe_slice(path), []).append(path.name)
    if len(sizes) > 1:
        described = ", ".join(f"{w}x{h} ({len(names)}, e.g. {names[0]})" for (w, h), names in sizes.items())
        raise ScanError(folder, f"mixed slice sizes: {described}")
    return paths


def read_slice_folder(
    folder: str | os.PathLike[str],
    prep: Preprocessing,
    expected_slices: int | None = None,
    positions: Sequence[int] | None = None,
) -> np.ndarray:
    """Fast reader: uint8 (D, H, W) volume of ``prep.size``, decoding only the slices depth sampling uses
    (all of them with ``antialias``).

    ``positions`` (0-based, into the numerically ordered slices) makes the scan out of those slices in that
    order - the hook a cleaning list uses to re-order slices and drop repeated ones; None takes them all.
    """
    paths = checked_slices(folder, expected_slices)
    if positions is not None:
        outside = [p for p in positions if not 0 <= p < len(paths)]
        if outside:
            raise ScanError(folder, f"slice position {outside[0]} is outside the scan's {len(paths)} slices")
        if len(positions) < 2:
            raise ScanError(folder, f"{len(positions)} slice(s) selected: not a 3D scan")
        paths = [paths[p] for p in positions]
    width, height = probe_slice(paths[0])  # checked_slices: every slice has this size
    check_slice_size(folder, height, width, prep.size)
    volume, _ = resample_planes(len(paths), lambda index: decode_slice(paths[index]), prep)
    return volume


def read_slice_folder_baseline(
    folder: str | os.PathLike[str], prep: Preprocessing, expected_slices: int | None = None
) -> np.ndarray:
    """Straightforward reader: decode every slice at full size, stack, resize the whole stack at once.

    This is the authors' two-step pipeline (slices to a full-size array, then one resize of the whole stack:
    trilinear, or scikit-image's anti-aliased resize with ``antialias``); it gives the same volume as
    ``read_slice_folder`` up to rounding, and is what ``bench_ingest`` measures against.
    """
    paths = checked_slices(folder, expected_slices)
    stack = np.stack([decode_slice(path) for path in paths])
    return resize_volume_reference(stack, prep)


def _png_bit_depth(path: Path) -> int | None:
    """The bit depth a PNG declares in its header (Pillow reads 16-bit RGB as 8-bit RGB without saying so)."""
    if not path.name.lower().endswith(".png"):
        return None
    with path.open("rb") as handle:
        head = handle.read(26)
    if len(head) == 26 and head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return head[24]
    return None


def _some(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
