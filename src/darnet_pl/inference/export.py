"""``darnet-export``: a checkpoint's DARNet as TorchScript and/or ONNX, with its preprocessing metadata embedded.

    darnet-export --ckpt run/checkpoints/epoch041.ckpt [--format torchscript onnx] [--out DIR] [--opset 18]

A deployed model is useless without its input contract, so the metadata (classes, input size, attention variant,
the preprocessing of ``darnet_pl.runs.checkpoints``, the tensor layout and value range) travels inside each file -
TorchScript as the extra file ``darnet.json`` (``torch.jit.load(path, _extra_files={"darnet.json": ""})``), ONNX as
``metadata_props["darnet"]`` - and beside them as ``<name>.json``. The files are made and checked in memory, then
written together (all of them or, on a full disk or an interrupt, none: ``darnet_pl.utils.io.publish_files``) into the
output folder, which is locked against a second export meanwhile; existing files are kept unless ``--overwrite``.

TorchScript is made with ``torch.jit.trace`` (deprecated by PyTorch in favour of ``torch.export``, still the format
C++/LibTorch deployments load); ONNX with the dynamo exporter (``torch.onnx.export(dynamo=True)``, needs
onnxscript: ``pip install 'darnet-pl[export]'``). Both keep the batch dimension free; D, H and W are fixed, as the
depth-attention layers are built for one depth. Each export is checked against the PyTorch model on random input
(TorchScript always; ONNX when onnxruntime is installed).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch

from darnet_pl.models import DARNet
from darnet_pl.runs.checkpoints import CheckpointMetadata, load_for_inference
from darnet_pl.runs.jobs import single_model
from darnet_pl.utils.io import check_writable, output_folder, publish_files

METADATA_KEY = "darnet"
TORCHSCRIPT_EXTRA_FILE = "darnet.json"
FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
DEFAULT_OPSET = 18
MIN_OPSET = 18
"""The dynamo exporter implements opset 18 and later; its down-conversion to 17 fails on DARNet's reductions."""
PARITY_TOLERANCE = 1e-4
INPUT_NAME = "ct"
OUTPUT_NAME = "logits"


class ExportError(ValueError):
    """An export that cannot be made as asked (missing extra, files in the way, failed parity); one line."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def export_metadata(meta: CheckpointMetadata, checkpoint: Path) -> dict[str, Any]:
    """The input/output contract of an exported model (JSON-able)."""
    d, h, w = meta.input_size
    return {
        "format_version": 1,
        "model": "DARNet",
        "attention": meta.attention,
        "width": meta.width,
        "class_names": list(meta.class_names),
        "input_size": list(meta.input_size),
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", meta.in_channels, d, h, w],
            "dtype": "float32",
            "values": "the preprocessed uint8 volume divided by 255, i.e. [0, 1]",
            "axes": "N, channel, D (superior->inferior), H (anterior->posterior), W (patient right->left)",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["N", len(meta.class_names)], "apply": "softmax over classes"},
        "preprocessing": meta.preprocessing,
        "preprocessing_origin": meta.preprocessing_origin,
        "source": meta.source,
        "checkpoint": {"path": str(checkpoint), "sha256": _sha256(checkpoint), "epoch": meta.epoch},
        "exported_with": {"torch": torch.__version__, "darnet-pl": _version("darnet-pl")},
    }


def example_input(model: DARNet, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand((batch, model.in_channels, *model.input_size), generator=generator)


def check_parity(name: str, reference: torch.Tensor, exported: Any, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max abs difference of the logits; an export that disagrees beyond ``tolerance`` is an error."""
    diff = float((reference - torch.as_tensor(exported)).abs().max())
    if not diff <= tolerance:
        raise ExportError(f"{name}: exported model differs from the checkpoint's by {diff:.2e} (> {tolerance})")
    return diff


def check_finite_output(model: DARNet, checkpoint: Path) -> None:
    """Finite weights can still overflow: a model whose logits are NaN/Inf is refused before anything is exported
    (its parity check would only say the export "differs by nan")."""
    with torch.inference_mode():
        logits = model(example_input(model, 1))
    if not bool(torch.isfinite(logits).all()):
        raise ExportError(
            f"{checkpoint}: the model's output is not finite (NaN or Inf) on a test input: its weights overflow; "
            "use another checkpoint"
        )


def torchscript_bytes(model: DARNet, metadata: dict[str, Any]) -> bytes:
    """Trace ``model`` (batch left free), embed ``metadata`` as ``darnet.json``, check it on another batch size.

    Serialised in memory, never straight into a file: LibTorch's writer aborts the whole process (a C++ exception,
    no Python error) when the disk fills up under it, and leaves its half-written file behind.
    """
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notice, and shape checks recorded as constants (sizes are fixed)
        traced = torch.jit.trace(model, example_input(model, 2), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(metadata, indent=2)})
    data = buffer.getvalue()
    x = example_input(model, 3)
    with torch.inference_mode():
        reference = model(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        check_parity("TorchScript export", reference, loaded(x))
    return data


def check_onnx_ready(opset: int) -> None:
    """Fail before any work when ONNX export cannot succeed (extra not installed, opset too old)."""
    for module in ("onnx", "onnxscript"):  # the dynamo exporter needs onnxscript
        try:
            importlib.import_module(module)
        except ImportError:
            raise ExportError(
                f"ONNX export needs the export extra ({module} is missing): pip install 'darnet-pl[export]'"
            ) from None
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: DARNet's export needs opset {MIN_OPSET} or later")
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset > newest:  # the exporter would log a converter traceback and then fall back to another opset
        raise ExportError(f"--opset {opset}: the installed onnx {onnx.__version__} knows opsets up to {newest}")


def onnx_bytes(model: DARNet, metadata: dict[str, Any], opset: int = DEFAULT_OPSET) -> bytes:
    """Export with the dynamo exporter (dynamic batch), add ``metadata_props``, check with onnxruntime if present.

    Serialised in memory like the TorchScript file, so that nothing is written before every export is checked.
    """
    check_onnx_ready(opset)
    import onnx

    model.eval()
    batch = torch.export.Dim("batch", min=1)
    quiet = [logging.getLogger(name) for name in ("torch.onnx._internal.exporter._registration", "onnxscript")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:  # "torchvision is not installed" notices (DARNet uses no torchvision op), converter noise
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example_input(model, 2),), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes={"x": {0: batch}}, verbose=False,
            )  # fmt: skip
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    proto = program.model_proto
    actual = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if actual != opset:
        raise ExportError(f"--opset {opset}: the exporter produced opset {actual}, not the requested {opset}")
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata)})
    data = proto.SerializeToString()
    try:
        import onnxruntime
    except ImportError:
        return data
    x = example_input(model, 3)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    with torch.inference_mode():
        check_parity("ONNX export", model(x), torch.from_numpy(logits))
    return data


def read_torchscript_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``darnet.json`` embedded in an exported TorchScript file."""
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_EXTRA_FILE])


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``darnet`` metadata property of an exported ONNX file."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY])


def export(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    formats: Sequence[str] = FORMATS,
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    best_so_far: bool = False,
) -> dict[str, Path]:
    """Export ``checkpoint`` (a file, or a run folder whose job finished; ``best_so_far``: also an unfinished job's
    best checkpoint so far) in ``formats``; returns {format or "metadata": written path}."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown format(s) {unknown}: expected some of {list(FORMATS)}")
    if name is not None:
        check_name(name)
    member, chosen = single_model(checkpoint, best_so_far)  # a run folder: its best checkpoint, if finished
    for skipped in chosen.skipped:
        print(f"note: {skipped.line()}", file=sys.stderr)
    checkpoint = member.checkpoint
    model, meta = load_for_inference(checkpoint, map_location="cpu")
    check_finite_output(model, checkpoint)
    folder = Path(out_dir) if out_dir is not None else checkpoint.parent
    stem = name if name is not None else checkpoint.stem
    targets = {fmt: f"{stem}{SUFFIXES[fmt]}" for fmt in FORMATS if fmt in formats}
    targets["metadata"] = f"{stem}.json"
    check_not_there(folder, targets.values(), overwrite)
    if "onnx" in targets:
        check_onnx_ready(opset)
    with output_folder(folder, "darnet-export"):  # locked while exporting: no second export writes here meanwhile
        check_writable(folder)  # a read-only folder is refused before the slow part, not after it
        check_not_there(folder, targets.values(), overwrite)  # again, now that the folder is ours
        metadata = {**export_metadata(meta, checkpoint), **chosen.provenance()}  # + the job, whether it finished
        contents: dict[str, bytes] = {}
        if "torchscript" in targets:
            contents[targets["torchscript"]] = torchscript_bytes(model, metadata)
        if "onnx" in targets:
            contents[targets["onnx"]] = onnx_bytes(model, {**metadata, "onnx_opset": opset}, opset=opset)
        files = {fmt: file for fmt, file in targets.items() if fmt != "metadata"}
        sidecar = {**metadata, "files": files, "onnx_opset": opset if "onnx" in targets else None}
        contents[targets["metadata"]] = (json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n").encode()
        publish_files(folder, contents, "the exported model")  # all files or, on a full disk, none
    return {fmt: folder / file for fmt, file in targets.items()}


def check_name(name: str) -> None:
    """``--name`` is a file name stem: a path in it (``../x``, ``a/b``) would write outside ``--out``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name or "\0" in name:
        raise ExportError(
            f"--name {name!r}: must be a plain file name stem (no folders, no '..'); use --out for the folder"
        )


def check_not_there(folder: Path, names: Any, overwrite: bool) -> None:
    """Existing exports are kept unless ``overwrite``."""
    existing = [str(folder / name) for name in names if (folder / name).exists()]
    if existing and not overwrite:
        raise ExportError(f"{existing[0]}: exists (pass --overwrite to replace the export)")
