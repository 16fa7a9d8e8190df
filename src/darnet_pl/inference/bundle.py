"""``darnet-export --format bundle``: a trained DARNet (one checkpoint, a run, or a one-experiment sweep ensemble) as a
MONAI bundle folder that ``python -m monai.bundle run`` executes with only MONAI and this package installed::

    <out>/
      configs/metadata.json    MONAI bundle metadata (meta_schema_20240725): versions, network_data_format (input
                               1 x D x H x W float32 in [0, 1], output one logit per class), classes, the
                               preprocessing, the checkpoints it came from
      configs/logging.conf     the logging setup monai.bundle run reads
      configs/inference.json   the inference workflow: the scans of ``dataset_dir`` through the MONAI transforms of
                               ``darnet_pl.data.volume_transforms`` (the very list training and darnet-predict run),
                               the network, softmax, and MONAI's ``SaveClassificationd`` (``<output_dir>/
                               predictions.csv``: one row per scan, ``path,p_<class>...`` in the metadata's order)
      models/model.pt          the network's state dict (``DARNetBundleNetwork``; weights only)
      models/model.ts          the same network traced to TorchScript, the metadata embedded (MONAI's
                               ``save_net_with_metadata``)
      docs/README.md           the model card (``darnet_pl.inference.model_card``)
      LICENSE                  MIT, as this package

Run it from the bundle folder (or pass ``--bundle_root``)::

    python -m monai.bundle run --config_file configs/inference.json --dataset_dir /path/to/scans

A sweep folder contributes the best checkpoint of every job below it, which must all be folds of one experiment
(``<sweep>/<variant>/[<overrides>/]fold<k>``): a sweep of several experiments is refused; export one of its
sub-folders. The bundle is built in a hidden folder beside ``--out`` and renamed into place when complete, so a
failure (full disk, interrupt) leaves no half bundle; an existing non-empty ``--out`` is kept unless
``--overwrite``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darnet_pl.data.volume_transforms import IMAGE_KEY, volume_transform_configs
from darnet_pl.inference.bundle_runtime import MEMBER_KEYS, DARNetBundleNetwork
from darnet_pl.inference.export import ExportError, check_parity, example_input
from darnet_pl.inference.model_card import render_model_card
from darnet_pl.inference.predict import ModelEnsemble, check_agreement
from darnet_pl.runs.checkpoints import CheckpointMetadata, load_for_inference
from darnet_pl.runs.jobs import JobSelectionError, model_sets
from darnet_pl.runs.layout import CHECKPOINT_DIR, HYDRA_OVERRIDES, METRICS_FILE, REPORT_JSON, SWEEP_REPORT_DIR
from darnet_pl.utils.io import (
    StorageError,
    check_writable,
    fresh_hidden,
    output_folder,
    remove_tree,
    storage_error,
    storage_guard,
)

SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
BUNDLE_VERSION = "0.1.0"
PROBABILITY_TOLERANCE = 1e-5
"""Largest difference allowed between the bundle network's softmax and darnet-predict's on the same input."""
_RUN = "darnet_pl.inference.bundle_runtime"


class BundleError(ExportError):
    """A bundle that cannot be made as asked; one line."""


# ---------------------------------------------------------------------------------------------- checkpoints


ONE_BUNDLE = "a bundle is one model (the folds of one experiment): pick one with --experiment {key}{folder_hint}"


def bundle_checkpoints(
    source: str | os.PathLike[str], best_so_far: bool = False, experiment: str | None = None
) -> list[Path]:
    """The checkpoints of a file, a run folder, or a sweep folder that holds the folds of one experiment (or of the
    one named by ``experiment``, its key): its finished jobs (``runs.jobs.model_sets``, the one definition of a job's
    experiment; ``best_so_far``: unfinished jobs' best checkpoints too)."""
    try:
        (chosen,) = model_sets([source], experiment=experiment, best_so_far=best_so_far, how=ONE_BUNDLE)
    except JobSelectionError as error:
        raise BundleError(str(error)) from None
    return chosen.files


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _job_folder(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else checkpoint.parent


def _command(job: Path) -> str | None:
    """``python -m darnet_pl <overrides>`` of a job, from Hydra's ``.hydra/overrides.yaml``."""
    import yaml

    try:
        overrides = yaml.safe_load((job / HYDRA_OVERRIDES).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(overrides, list):
        return None
    return "python -m darnet_pl " + " ".join(str(o) for o in overrides)


def provenance(source: Path, files: Sequence[Path]) -> dict[str, Any]:
    """What the model card can say about how the checkpoints were made: commands, test metrics, a report."""
    jobs = [_job_folder(f) for f in files]
    metrics = [m for m in (_read_json(job / METRICS_FILE) for job in jobs) if m is not None]
    commands = list(dict.fromkeys(c for c in (_command(job) for job in jobs) if c))
    report = _read_json(source / SWEEP_REPORT_DIR / REPORT_JSON) if source.is_dir() else None
    return {"test_metrics": metrics, "commands": commands, "report": report}


# ---------------------------------------------------------------------------------------------- contents


def member_arguments(meta: CheckpointMetadata) -> dict[str, Any]:
    """The DARNet constructor arguments of one checkpoint (``DARNetBundleNetwork``'s ``members`` entries)."""
    values = {
        "attention": meta.attention,
        "in_channels": meta.in_channels,
        "num_classes": len(meta.class_names),
        "input_size": list(meta.input_size),
        "width": meta.width,
        "ca_reduction": meta.ca_reduction,
    }
    return {k: values[k] for k in MEMBER_KEYS}


def bundle_network(models: Sequence[torch.nn.Module], metadata: Sequence[CheckpointMetadata]) -> DARNetBundleNetwork:
    """The network of the bundle with the checkpoints' weights, checked against darnet-predict's ensemble."""
    network = DARNetBundleNetwork([member_arguments(m) for m in metadata], [m.temperature for m in metadata])
    for target, model in zip(network.models, models, strict=True):
        target.load_state_dict(model.state_dict(), strict=True)
    network.eval()
    x = example_input(network.models[0], 3)
    with torch.inference_mode():
        reference = ModelEnsemble(list(models), list(metadata)).probabilities(x).mean(dim=0)
        check_parity("bundle network", reference, network(x).softmax(dim=1), PROBABILITY_TOLERANCE)
    return network


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def inference_config(metadata: Sequence[CheckpointMetadata]) -> dict[str, Any]:
    """``configs/inference.json``: a MONAI bundle inference workflow (no pytorch-ignite needed)."""
    prep = metadata[0].preprocessing_settings()
    members = [member_arguments(m) for m in metadata]
    to_unit = [  # the uint8 model grid divided by 255, as darnet-predict feeds the model
        {"_target_": "ScaleIntensityRanged", "keys": IMAGE_KEY, "a_min": 0, "a_max": 255, "b_min": 0, "b_max": 1},
        {"_target_": "EnsureTyped", "keys": IMAGE_KEY, "dtype": "$torch.float32", "track_meta": False},
    ]
    softmax = {"_target_": "Activationsd", "keys": "pred", "softmax": True}
    writer = {
        "_target_": "SaveClassificationd",
        "keys": "pred",
        "meta_keys": f"{IMAGE_KEY}_meta_dict",
        "output_dir": "@output_dir",
        "filename": "predictions.csv",
        "overwrite": True,
        "flush": True,
    }
    return {
        "imports": ["$import torch", f"$from {_RUN} import scan_datalist"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "dataset_dir": "$@bundle_root + '/scans'",
        "output_dir": "$@bundle_root + '/eval'",
        "datalist": "$scan_datalist(@dataset_dir)",
        "network_def": {
            "_target_": f"{_RUN}.DARNetBundleNetwork",
            "members": members,
            "temperatures": [m.temperature for m in metadata],
        },
        "network": "$@network_def.to(@device)",
        "checkpoint": "$@bundle_root + '/models/model.pt'",
        "load_weights": "$@network.load_state_dict(torch.load(@checkpoint, map_location=@device, weights_only=True))",
        "preprocessing": {"_target_": "Compose", "transforms": [*volume_transform_configs(prep, IMAGE_KEY), *to_unit]},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {"_target_": "Compose", "transforms": [softmax, writer]},
        "evaluator": {
            "_target_": f"{_RUN}.ScanClassifier",
            "dataset": "@dataset",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "device": "@device",
        },
        "run": ["$@load_weights", "$@evaluator.run()"],
    }


def bundle_metadata(
    metadata: Sequence[CheckpointMetadata], files: Sequence[Path], metrics: Mapping[str, Any]
) -> dict[str, Any]:
    """``configs/metadata.json`` (MONAI's bundle metadata schema, plus this package's ``darnet`` section)."""
    import monai

    first = metadata[0]
    prep = first.preprocessing_settings()
    classes = list(first.class_names)
    low, high = prep.window_level - prep.window_width / 2, prep.window_level + prep.window_width / 2
    channel = {i: name for i, name in enumerate(classes)}
    today = dt.date.today().isoformat()
    return {
        "schema": SCHEMA_URL,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: f"exported by darnet-export on {today}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {
            "darnet-pl": _version("darnet-pl"),
            "nibabel": _version("nibabel"),
            "pydicom": _version("pydicom"),
            "scipy": _version("scipy"),
        },
        "task": "Classification of 3D chest CT into " + ", ".join(classes) + " (research use only)",
        "description": (
            f"DARNet (dual-attention 3D ResNet-18, Shi et al.), attention {first.attention}, width {first.width}, "
            f"{len(metadata)} checkpoint(s) (mean softmax when several), trained with darnet-pl. Input: one NIfTI "
            "file or DICOM series per scan; output: per-scan class probabilities. Not for clinical diagnosis."
        ),
        "authors": "darnet-pl contributors",
        "copyright": "Copyright (c) the darnet-pl contributors; MIT license",
        "data_source": str(first.source.get("source", "unknown")),
        "data_type": "nibabel and dicom",
        "image_classes": f"one channel: CT in Hounsfield units, windowed to [{low:g}, {high:g}] HU, scaled to 0-1",
        "pred_classes": ", ".join(f"{i}: {name}" for i, name in channel.items()),
        "eval_metrics": dict(metrics),
        "intended_use": "Research on the DARNet method only; not validated for, and not to be used for, diagnosis.",
        "references": [
            "Shi et al., DARNet: dual-attention residual network for COVID-19 diagnosis from chest CT (the paper "
            "this package reproduces)",
            "Zhang et al., Clinically applicable AI system for accurate diagnosis, quantitative measurements, and "
            "prognosis of COVID-19 pneumonia using computed tomography, Cell 2020 (CC-CCII)",
        ],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "CT",
                    "num_channels": first.in_channels,
                    "spatial_shape": list(first.input_size),
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "CT, lung window, 0-1"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "logits",
                    "format": "classes",
                    "num_channels": len(classes),
                    "spatial_shape": [1],
                    "dtype": "float32",
                    "value_range": [],
                    "is_onehot": False,
                    "channel_def": {str(k): v for k, v in channel.items()},
                }
            },
            "post_processed_outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classes",
                    "num_channels": len(classes),
                    "spatial_shape": [1],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "channel_def": {str(k): v for k, v in channel.items()},
                }
            },
        },
        "darnet": {
            "axes": "D superior->inferior, H anterior->posterior, W patient right->left (Orientationd axcodes IPL)",
            "spacing_policy": "none: every scan is resampled to the input size whatever its voxel spacing",
            "intensity_window_hu": [low, high],
            "preprocessing": prep.to_dict(),
            "class_names": classes,
            "temperatures": [m.temperature for m in metadata],
            "checkpoints": [{"path": str(f), "epoch": m.epoch} for f, m in zip(files, metadata, strict=True)],
            "source": first.source,
        },
    }


def torchscript_bytes(network: DARNetBundleNetwork, metadata: Mapping[str, Any]) -> bytes:
    """``network`` traced (batch free) and saved with MONAI's ``save_net_with_metadata``, checked after loading."""
    from monai.data import save_net_with_metadata

    x = example_input(network.models[0], 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notice, shape checks recorded as constants (sizes are fixed)
        traced = torch.jit.trace(network, x, check_trace=False)
        buffer = io.BytesIO()
        save_net_with_metadata(traced, buffer, include_config_vals=False, append_timestamp=False, meta_values=metadata)
        data = buffer.getvalue()
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    y = example_input(network.models[0], 3)
    with torch.inference_mode():
        check_parity("TorchScript bundle model", network(y), loaded(y))
    return data


def _state_bytes(network: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    return buffer.getvalue()


MIT_LICENSE = """MIT License

Copyright (c) {year} the darnet-pl contributors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=console

[formatters]
keys=plain

[logger_root]
level=INFO
handlers=console

[handler_console]
class=StreamHandler
level=INFO
formatter=plain
args=(sys.stdout,)

[formatter_plain]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""
"""``configs/logging.conf``: where ``python -m monai.bundle run`` looks for its logging setup (it warns without one)."""

HOW_TO_RUN = (
    "Run the bundle (MONAI and darnet-pl installed; `pip install fire` for MONAI's command line), from its folder:",
    "",
    "```bash",
    "python -m monai.bundle run --config_file configs/inference.json --dataset_dir /path/to/scans",
    "```",
    "",
    "`/path/to/scans` holds NIfTI files and DICOM series folders (one series per folder); `eval/predictions.csv` "
    "gets one row per scan: its path, then the class probabilities in the order of `configs/metadata.json` "
    "(`pred_classes`). The preprocessing is the MONAI transform list in `configs/inference.json#preprocessing`, the "
    "same list darnet-predict applies. A scan that cannot be read stops the run with MONAI's error (darnet-predict "
    "reports it in one line and goes on with the others).",
)


def bundle_contents(source: Path, files: Sequence[Path]) -> dict[str, bytes]:
    """Every file of the bundle, made and checked in memory."""
    loaded = [load_for_inference(path, map_location="cpu") for path in files]
    models, metadata = [m for m, _ in loaded], [meta for _, meta in loaded]
    check_agreement(metadata)
    network = bundle_network(models, metadata)
    known = provenance(source, files)
    metrics = {}
    if len(known["test_metrics"]) == 1:
        metrics = {k: v for k, v in known["test_metrics"][0].items() if isinstance(v, int | float)}
    meta_json = bundle_metadata(metadata, files, metrics)
    card = render_model_card(
        [m.to_dict() for m in metadata],
        report=known["report"],
        test_metrics=known["test_metrics"],
        commands=known["commands"],
        how_to_run=HOW_TO_RUN,
    )

    def text(payload: Any) -> bytes:
        return (json.dumps(payload, indent=2, default=str) + "\n").encode()

    return {
        "configs/metadata.json": text(meta_json),
        "configs/inference.json": text(inference_config(metadata)),
        "configs/logging.conf": LOGGING_CONF.encode(),
        "models/model.pt": _state_bytes(network),
        "models/model.ts": torchscript_bytes(network, meta_json),
        "docs/README.md": card.encode(),
        "LICENSE": MIT_LICENSE.format(year=dt.date.today().year).encode(),
    }


# ---------------------------------------------------------------------------------------------- writing


def check_bundle_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BundleError(f"{out}: exists and is not empty (pass --overwrite to replace the bundle)")


def write_bundle(out: Path, contents: Mapping[str, bytes]) -> None:
    """Write ``contents`` into a hidden staging folder beside ``out``, then swap it in for ``out``."""
    try:
        stage = fresh_hidden(out.parent, f".{out.name}.staging-", "", lambda path: path.mkdir(mode=0o700), remove_tree)
    except OSError as error:
        raise storage_error(out.parent, error, "into this output folder") from None
    old: Path | None = None
    try:
        for name, data in contents.items():
            with storage_guard(out / name, "the bundle"):
                (stage / name).parent.mkdir(parents=True, exist_ok=True)
                (stage / name).write_bytes(data)
        for folder in (stage, *(p for p in stage.rglob("*") if p.is_dir())):
            os.chmod(folder, 0o755)  # staged private (0700): the bundle is meant to be shared
        with storage_guard(out, "the bundle"):
            if out.exists():
                old = out.parent / f".{out.name}.replaced-{os.getpid()}"
                os.rename(out, old)
            try:
                os.rename(stage, out)
            except OSError:
                if old is not None:
                    os.rename(old, out)
                    old = None
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def export_bundle(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    overwrite: bool = False,
    best_so_far: bool = False,
    experiment: str | None = None,
) -> dict[str, Path]:
    """Export ``source`` (checkpoint, run, or sweep of one experiment or with ``experiment`` naming one) as a MONAI
    bundle in ``out_dir``; the files."""
    source = Path(source)
    out = Path(out_dir).expanduser()
    check_bundle_target(out, overwrite)
    files = bundle_checkpoints(source, best_so_far, experiment)
    with output_folder(out.parent, "darnet-export"):  # locked: no second export writes beside it meanwhile
        check_writable(out.parent)
        check_bundle_target(out, overwrite)  # again, now that the folder is ours
        contents = bundle_contents(source, files)
        try:
            write_bundle(out, contents)
        except StorageError:
            raise
        except OSError as error:
            raise storage_error(out, error, "the bundle") from None
    return {name: out / name for name in contents}
