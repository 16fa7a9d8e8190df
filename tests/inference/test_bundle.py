"""``darnet-export --format bundle``: a MONAI bundle checked with MONAI's own tools, offline.

The bundle is made from a sweep of two tiny folds whose checkpoints say they were trained on scans cropped 48/512,
lung-windowed and resized linearly (so every step of the transform chain acts), one with a fitted temperature; the
scans are Hounsfield-unit NIfTI files (two orientations) and a DICOM series. ``python -m monai.bundle run`` of the
bundle's inference config must give the probabilities ``darnet-predict`` gives for the same files and checkpoints.

Tolerance: 1e-5 absolute per probability. Both run the same transform list (``volume_transform_configs``) to the
same uint8 volume, so the only differences are float rounding of the network: the bundle evaluates one scan at a
time and averages an ensemble as ``softmax(logsumexp(log_softmax) - log M)``, predict batches scans and averages
softmax outputs directly - a few float32 ulps (about 1e-7) on probabilities of order 0.3; 1e-5 leaves room for
other BLAS kernels and is still a hundred times below the 1e-3 a changed voxel would move them.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from darnet_pl.data.phantoms.dicom import save_ct_slice
from tests.helpers.checkpoints import make_checkpoint
from tests.helpers.faults import every_file, only_line, run_tool, tmpfs
from tests.helpers.forked import run_forked
from tests.helpers.user import explain

SCHEMA = Path(__file__).parent / "monai_schema" / "meta_schema_20240725.json"
SCHEMA_SHA256 = "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"
"""MONAI's metadata schema, Apache-2.0 (MONAI Consortium): the copy and its source are in monai_schema/NOTICE.md."""
EXPORT = "darnet_pl.cli.export"
TOLERANCE = 1e-5
PREPROCESSING = {"size": [16, 32, 32], "border_crop": 48, "reference_width": 512, "window_level": -600.0,
                 "window_width": 1500.0, "depth_interpolation": "linear"}  # fmt: skip


def as_trained_on_files(path: Path, temperature: float | None = None) -> Path:
    """Make a tiny checkpoint say it was trained on cached files with ``PREPROCESSING`` (as a data=folder run)."""
    payload = torch.load(path, weights_only=True)
    data = payload.setdefault("datamodule_hyper_parameters", {})
    data["source_description"] = {"source": "folder", "preprocessing": {**PREPROCESSING, "version": 1}}
    if temperature is not None:
        payload["darnet_temperature"] = temperature
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """``<sweep>/dual/fold{0,1}/checkpoints/epoch000.ckpt`` with test metrics, one experiment."""
    root = tmp_path_factory.mktemp("sweep")
    for fold, temperature in ((0, None), (1, 1.7)):
        job = root / "dual" / f"fold{fold}"
        (job / "checkpoints").mkdir(parents=True)
        ckpt = make_checkpoint(job / "checkpoints" / "epoch000.ckpt", seed=11 + fold)
        as_trained_on_files(ckpt, temperature)
        (job / "test_metrics.json").write_text(json.dumps({"test/3class/auc_macro": 0.5 + fold / 10}))
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(f"- +experiment=smoke\n- fold={fold}\n")
    return root


def hounsfield(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """int16 (x, y, z) raw values (HU + 1024): a body with two darker lungs and noise."""
    rng = np.random.default_rng(seed)
    x, y, _ = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    hu = np.where(x**2 / 0.8 + y**2 / 0.6 < 1, 40.0, -1000.0)
    hu[((np.abs(x) - 0.4) ** 2 + y**2) < 0.12] = -850.0
    return np.rint(hu + rng.normal(0, 30, shape) + 1024).astype(np.int16)


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    for name, shape, affine in (
        ("a.nii.gz", (40, 36, 24), np.diag([-0.8, -0.8, 2.0, 1.0])),
        ("b.nii", (30, 20, 44), np.array([[0, 0, -1.0, 0], [0, 1.5, 0, 0], [0.7, 0, 0, 0], [0, 0, 0, 1]])),
    ):
        image = nib.Nifti1Image(hounsfield(shape, seed=len(name)), affine)
        image.header.set_slope_inter(1.0, -1024.0)
        nib.save(image, folder / name)
    from pydicom.uid import generate_uid

    series, raw = generate_uid(), hounsfield((28, 28, 12), seed=3)
    (folder / "c_series").mkdir()
    for z in range(raw.shape[2]):  # shuffled file names, no InstanceNumber: ordered by position only
        name = f"IM{(7 * z) % raw.shape[2]:03d}"
        save_ct_slice(folder / "c_series" / name, raw[:, :, z].T - 1024.0, [-50.0, -50.0, 2.5 * z], series, 0.9)
    return folder


@pytest.fixture(scope="module")
def bundle(sweep, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "darnet_bundle"
    result = run_tool(EXPORT, "--ckpt", sweep, "--format", "bundle", "--out", out, cwd=out.parent, timeout=300)
    assert result.returncode == 0, explain(result)
    return out


def test_bundle_tree(bundle):
    assert every_file(bundle) == [
        "LICENSE", "configs", "configs/inference.json", "configs/logging.conf", "configs/metadata.json", "docs",
        "docs/README.md", "models", "models/model.pt", "models/model.ts",
    ]  # fmt: skip
    assert "MIT License" in (bundle / "LICENSE").read_text()
    card = (bundle / "docs" / "README.md").read_text()
    assert "Research only - not for clinical diagnosis" in card
    assert "python -m darnet_pl +experiment=smoke fold=0" in card and "AUC (3 classes, macro): 0.5500" in card
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    targets = [t["_target_"] for t in inference["preprocessing"]["transforms"]]
    assert "darnet_pl.data.volume_transforms.OrientDHWd" in targets and "monai.transforms.Resized" in targets
    assert inference["network_def"]["_target_"] == "darnet_pl.inference.bundle_runtime.DARNetBundleNetwork"
    assert inference["network_def"]["temperatures"] == [1.0, 1.7]


def test_metadata_validates_against_the_shipped_schema_offline(bundle, monkeypatch):
    pytest.importorskip("jsonschema")
    import monai.apps.utils
    from monai.bundle import verify_metadata

    def no_download(*args, **kwargs):
        raise AssertionError("verify_metadata tried to download the schema")

    monkeypatch.setattr(monai.apps.utils, "_download_with_progress", no_download)
    meta_file = bundle / "configs" / "metadata.json"
    # the file exists and has the pinned hash: MONAI checks it and skips the download
    verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA), hash_val=SCHEMA_SHA256, hash_type="sha256")
    metadata = json.loads(meta_file.read_text())
    assert metadata["schema"].endswith("/meta_schema_20240725.json")
    fmt = metadata["network_data_format"]
    assert fmt["inputs"]["image"]["spatial_shape"] == [16, 32, 32]
    assert fmt["outputs"]["pred"]["channel_def"] == {"0": "CP", "1": "NCP", "2": "Normal"}
    assert metadata["darnet"]["intensity_window_hu"] == [-1350.0, 150.0]
    broken = json.loads(meta_file.read_text())
    del broken["network_data_format"]
    (bundle.parent / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="network_data_format"):
        verify_metadata(
            meta_file=str(bundle.parent / "broken.json"),
            filepath=str(SCHEMA),
            hash_val=SCHEMA_SHA256,
            hash_type="sha256",
        )


def test_network_passes_verify_net_in_out_and_the_inference_properties(bundle, scans):
    from monai.bundle import ConfigWorkflow, verify_net_in_out

    configs = bundle / "configs"
    verify_net_in_out(
        net_id="network_def", meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"), device="cpu",
    )  # fmt: skip
    workflow = ConfigWorkflow(  # logging_file=False: MONAI's logging.fileConfig would reset this process's loggers
        config_file=str(configs / "inference.json"), meta_file=str(configs / "metadata.json"),
        workflow_type="inference", logging_file=False, bundle_root=str(bundle), dataset_dir=str(scans),
    )  # fmt: skip
    workflow.initialize()
    assert workflow.check_properties() == []


@pytest.mark.slow  # subprocesses that load and run the models
def test_monai_bundle_run_matches_darnet_predict(bundle, sweep, scans, tmp_path):
    pytest.importorskip("fire")
    out = tmp_path / "bundle_eval"
    result = run_forked(
        "monai.bundle", "run", "--config_file", bundle / "configs" / "inference.json",
        "--bundle_root", bundle, "--dataset_dir", scans, "--output_dir", out, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    with (out / "predictions.csv").open() as handle:
        rows = {Path(row[0]).name: np.array([float(v) for v in row[1:]]) for row in csv.reader(handle)}
    predicted = run_tool("darnet_pl.cli.predict", "--ckpt", sweep, "--out", tmp_path / "predict",
                         *sorted(scans.iterdir()), cwd=tmp_path, timeout=300)  # fmt: skip
    assert predicted.returncode == 0, explain(predicted)
    reference = json.loads((tmp_path / "predict" / "predictions.json").read_text())["scans"]
    assert sorted(rows) == ["a.nii.gz", "b.nii", "c_series"] == sorted(Path(s["path"]).name for s in reference)
    for scan in reference:
        expected = np.array([scan["probabilities"][c] for c in ("CP", "NCP", "Normal")])
        ours = rows[Path(scan["path"]).name]
        assert np.abs(ours - expected).max() <= TOLERANCE, (scan["path"], ours, expected)
        assert abs(ours.sum() - 1.0) < 1e-5


# ---------------------------------------------------------------------------------------- refusals


@pytest.mark.slow  # subprocesses that load and run the models
def test_an_existing_bundle_is_kept_without_overwrite(sweep, bundle, tmp_path, cwd):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = run_tool(EXPORT, "--ckpt", sweep, "--format", "bundle", "--out", target, cwd=cwd)
    assert result.returncode == 2
    assert (
        only_line(result.stderr) == f"error: {target}: exists and is not empty (pass --overwrite to replace the bundle)"
    )
    assert every_file(target) == ["keep.txt"] and every_file(cwd) == []
    result = run_tool(EXPORT, "--ckpt", sweep / "dual" / "fold1", "--format", "bundle", "--out", target,
                      "--overwrite", cwd=cwd)  # fmt: skip
    assert result.returncode == 0, explain(result)
    assert "keep.txt" not in every_file(target) and (target / "models" / "model.ts").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging or replaced folder left
    metadata = json.loads((target / "configs" / "metadata.json").read_text())
    assert len(metadata["darnet"]["checkpoints"]) == 1 and metadata["eval_metrics"] == {"test/3class/auc_macro": 0.6}


def test_a_sweep_of_several_experiments_is_refused(sweep, tmp_path, cwd):
    mixed = tmp_path / "mixed"
    for variant in ("dual", "ca"):  # two finished jobs of an ablation sweep, as training leaves them
        job = mixed / variant / "fold0"
        shutil.copytree(sweep / "dual" / "fold0", job)
        (job / "config_resolved.yaml").write_text(
            f"task_name: smoke_ablation\nfold: 0\nmodel:\n  attention: {variant}\n"
        )
    result = run_tool(EXPORT, "--ckpt", mixed, "--format", "bundle", "--out", tmp_path / "out", cwd=cwd)
    assert result.returncode == 2
    assert only_line(result.stderr) == (
        f"error: {mixed}: holds 2 experiments (smoke_ablation/ca (1 job), smoke_ablation/dual (1 job)); a bundle is "
        f"one model (the folds of one experiment): pick one with --experiment smoke_ablation/ca (or give its folder, "
        f"--ckpt {mixed / 'ca'})"
    )
    assert not (tmp_path / "out").exists() and every_file(cwd) == []
    result = run_tool(EXPORT, "--ckpt", mixed, "--experiment", "smoke_ablation/dual", "--format", "bundle",
                      "--out", tmp_path / "out", cwd=cwd)  # fmt: skip
    assert result.returncode == 0, explain(result)
    metadata = json.loads((tmp_path / "out" / "configs" / "metadata.json").read_text())
    assert [Path(c["path"]).parts[-4:-2] for c in metadata["darnet"]["checkpoints"]] == [("dual", "fold0")]


@pytest.mark.slow  # subprocesses that load and run the models
def test_read_only_and_full_disks_leave_nothing(tiny_checkpoint, tmp_path, cwd):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--format", "bundle", "--out", ro / "b", cwd=cwd)
        assert result.returncode == 2
        assert only_line(result.stderr) == f"error: {ro}: cannot write into this output folder (Read-only file system)"
    with tmpfs(tmp_path / "full", size="600k") as full:  # model.pt fits, model.ts (0.9 MB) does not
        result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--format", "bundle", "--out", full / "b", cwd=cwd)
        assert result.returncode == 2
        line = only_line(result.stderr)
        assert line.startswith(f"error: {full / 'b'}/") and line.endswith(
            "cannot write the bundle (No space left on device)"
        )
        assert every_file(full) == []
    assert every_file(cwd) == []


def test_bundle_is_given_alone(tiny_checkpoint, tmp_path, cwd):
    result = run_tool(EXPORT, "--ckpt", tiny_checkpoint, "--format", "bundle", "onnx", "--out", tmp_path / "b", cwd=cwd)
    assert result.returncode == 2
    assert (
        only_line(result.stderr) == "error: --format bundle: give it alone (the bundle holds its own TorchScript model)"
    )
    assert not (tmp_path / "b").exists()
