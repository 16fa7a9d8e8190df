"""The documentation is the test suite: every command of the ```bash blocks of the README, CONTRIBUTING.md and the
docs pages (tests/helpers/readme.py) runs here as a user types it.

One user, one empty working folder, the README and then the docs read top to bottom: each command is run as written
(paths such as ``/data/CC-CCII`` point at small stand-ins made in that folder; a placeholder such as ``<run>`` is
the folder an earlier command made), with only the environment a user has (tests/helpers/user.py) and no
output-folder override. The user has CC-CCII (a subset of real scan ids of the paper's split, tiny slices) and
has exported ``DARNET_CCII_ROOT`` as the docs say.
Commands that train get the documented preset ``debug=tiny`` appended (a real training of seconds); commands that
need a GPU or a cluster are checked by a launcher dry run (every job's composed config, the launcher importable);
``make`` targets by ``make -n`` plus the command they run. A command added to the README or the docs without a case
here fails ``test_every_documented_command_has_a_case``; a case whose command left them fails it too.
"""

from __future__ import annotations

import csv
import glob
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from darnet_pl.cli.argv import normalize_argv
from darnet_pl.runs.naming import job_subdir
from tests.helpers import datasets
from tests.helpers.readme import documented_commands
from tests.helpers.sweeps import dry_run_jobs
from tests.helpers.user import REPO_ROOT, explain, run_as_typed

pytestmark = pytest.mark.slow

TINY = "debug=tiny"
OUTPUT_FILES = ("config_resolved.yaml", "split_manifest.csv", "test_metrics.json", "predictions.csv", "csv/metrics.csv")


@dataclass
class User:
    """A user's working folder and what their commands printed (each command runs once per session)."""

    home: Path
    has_ccii: bool = True
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    made: dict[str, list[Path]] = field(default_factory=dict)

    def run(self, command: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
        if command not in self.results:
            before = set(self.home.glob("outputs/*/runs/*"))
            env = {"DARNET_CCII_ROOT": str(self.ccii)} if self.has_ccii else {}
            self.results[command] = run_as_typed(self.local(command), self.home, timeout, **env)
            self.made[command] = sorted(set(self.home.glob("outputs/*/runs/*")) - before)
        return self.results[command]

    def ok(self, command: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
        result = self.run(command, timeout)
        assert result.returncode == 0, explain(result)
        assert "Traceback" not in result.stderr, explain(result)
        assert "UserWarning: Callback" not in result.stderr, explain(result)  # the Hydra callbacks ran cleanly
        return result

    def local(self, command: str) -> str:
        """The README's absolute example paths (/data/...) point into this user's folder."""
        return command.replace("/data/", f"{self.home}/data/").replace("data.root=...", f"data.root={self.ccii}")

    @property
    def ccii(self) -> Path:
        return self.home / "data" / "CC-CCII"

    def run_folder(self, command: str) -> Path:
        self.ok(command)
        assert len(self.made[command]) == 1, f"{command} made {self.made[command]}"
        return self.made[command][0]


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> User:
    home = tmp_path_factory.mktemp("user")
    data = home / "data"
    datasets.ccii_paper_subset(data / "CC-CCII")
    datasets.own_scans(data)
    datasets.write_nifti(home / "scan.nii.gz", datasets.chest_volume(1))
    datasets.write_dicom_series(home / "dicom" / "patient018" / "series2", datasets.chest_volume(2))
    for k in range(2):
        datasets.write_nifti(home / "scans" / f"case{k}.nii.gz", datasets.chest_volume(10 + k))
    with (home / "my_scans.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("path",), ("scan.nii.gz",), ("dicom/patient018/series2",)])
    return User(home)


# --- what each kind of command must show -----------------------------------------------------------------------


def make_target(recipe: str, then: str | None = None) -> Callable[[User, str], None]:
    """``make X`` typed in the checkout: ``make -n`` shows the recipe; ``then`` (a README command) runs it tiny."""

    def check(user: User, command: str) -> None:
        target = command.split()[1]
        dry = subprocess.run(["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        assert recipe in dry.stdout, dry.stdout
        if then:
            single_run(then)(user, then)

    return check


def make_always(recipe: str) -> Callable[[User, str], None]:
    """``make install`` typed in the checkout: what it would run even where .venv is up to date (``make -n -B``)."""

    def check(user: User, command: str) -> None:
        target = command.split()[1]
        dry = subprocess.run(["make", "-n", "-B", target], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        assert recipe in dry.stdout, dry.stdout

    return check


def make_for_real(user: User, command: str) -> None:
    result = subprocess.run(command.split(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def single_run(typed: str | None = None, task: str | None = None) -> Callable[[User, str], None]:
    """A training run: a new folder under outputs/<task>/runs/ holding the files the README's Outputs lists."""

    def check(user: User, command: str) -> None:
        command = typed or command
        run = user.run_folder(command if "debug=" in command else f"{command} {TINY}")
        expected_task = task or command.split("+experiment=")[1].split()[0]
        assert run.parent == user.home / "outputs" / expected_task / "runs"
        for name in OUTPUT_FILES:
            csv_logged = "logger=" not in command or "csv" in command.split("logger=")[1].split()[0]
            if name.startswith("csv/") and not csv_logged:
                continue
            assert (run / name).is_file(), f"{run}: no {name}"
        assert (run / ".hydra" / "config.yaml").is_file() and (run / f"{expected_task}.log").is_file()
        checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
        assert checkpoints[-1] == "last.ckpt" and checkpoints[0].startswith("epoch"), checkpoints
        header = (run / "predictions.csv").read_text().splitlines()[0]
        assert header == "patient_id,scan_id,label,prob_CP,prob_NCP,prob_Normal"
        assert 0.0 <= json.loads((run / "test_metrics.json").read_text())["test/3class/auc_macro"] <= 1.0

    return check


def overrides_run(expect: dict[str, object]) -> Callable[[User, str], None]:
    """A run whose overrides include a long training (``trainer.max_epochs=20``): the command as typed composes
    to ``expect`` (``--cfg job``), and runs tiny with its epochs capped at 2, which is what a test can afford."""

    composes_as_expected = composed(expect)

    def check(user: User, command: str) -> None:
        composes_as_expected(user, command)
        single_run(f"{command} {TINY} trainer.max_epochs=2", task="smoke")(user, command)

    return check


def composed(expect: dict[str, object]) -> Callable[[User, str], None]:
    """A command for hardware this machine lacks (4 GPUs): as typed, it composes to ``expect`` (``--cfg job``)."""

    def check(user: User, command: str) -> None:
        node_of = yaml.safe_load(user.ok(f"{command} --cfg job").stdout)
        for dotted, value in expect.items():
            node = node_of
            for key in dotted.split("."):
                node = node[key]
            assert node == value, (dotted, node)

    return check


def as_typed(expect: str) -> Callable[[User, str], None]:
    def check(user: User, command: str) -> None:
        result = user.ok(command)
        assert expect in result.stdout + result.stderr, explain(result)

    return check


def sweep(variants: tuple[str, ...], folds: int) -> Callable[[User, str], None]:
    """A real multirun: one folder per job, <sweep>/<variant>/[<overrides>/]fold<k>, and the report at the end."""

    def check(user: User, command: str) -> None:
        command = command if "debug=" in command else f"{command} {TINY}"
        result = user.ok(command)
        task = command.split("+experiment=")[1].split()[0]
        root = user.home / "outputs" / task / "sweep"
        overrides = [a for a in normalize_argv(["prog", *command.split()[3:]])[1:] if not a.startswith("-")]
        for variant in variants:
            for fold in range(folds):
                job = root / job_subdir(variant, fold, overrides)
                assert (job / "test_metrics.json").is_file(), f"{job}: not finished\n{explain(result)}"
        table = (root / "report" / "table_iv.md").read_text()
        assert f"{folds} folds" in table, table

    return check


def dry_run(launcher: str, devices: str | int | None = None, jobs: int = 20) -> Callable[[User, str], None]:
    """Commands for GPUs or a cluster: every job composes, the launcher is the one asked for and importable."""

    def check(user: User, command: str) -> None:
        planned = dry_run_jobs(command.split()[3:], cwd=user.home)
        assert len(planned) == jobs
        assert {(j.attention, j.fold) for j in planned} == {(a, f) for a in ABLATION for f in range(5)}
        for job in planned:
            assert job.launcher == launcher
            if devices is not None:
                assert job.trainer["devices"] == devices
                assert job.trainer["strategy"]["_target_"] == "darnet_pl.distributed.ddp.HydraDDPStrategy"

    return check


# --- commands that need the files earlier commands made ----------------------------------------------------------


def report(user: User, command: str) -> None:
    sweep(("none", "ca", "da", "dual"), 5)(user, "python -m darnet_pl +experiment=ablation fold=0..4 -m")
    out = user.home / "outputs" / "ablation" / "sweep" / "report"
    shutil.rmtree(out)  # the end-of-sweep report wrote it; the command must write it again by itself
    result = user.ok(command)
    for name in ("table_iv.md", "table_iv.csv", "table_iv.tex", "report.json"):
        assert (out / name).is_file(), explain(result)
    table = (out / "table_iv.md").read_text()
    for method in ("DARNet (w/o DA and CA)", "DARNet (w/o DA)", "DARNet (w/o CA)", "| DARNet"):
        assert method in table


def model_card(user: User, command: str) -> None:
    """The ablation's model card from the report its sweep wrote."""
    sweep(("none", "ca", "da", "dual"), 5)(user, "python -m darnet_pl +experiment=ablation fold=0..4 -m")
    result = user.ok(command)
    card = (user.home / "outputs" / "ablation" / "sweep" / "report" / "MODEL_CARD.md").read_text()
    assert result.stdout.strip() == "model card: outputs/ablation/sweep/report/MODEL_CARD.md", explain(result)
    assert "**Research only - not for clinical diagnosis.**" in card and "**Known shortcut.**" in card, card
    commands = card.split("```bash\n", 1)[1].split("```")[0].splitlines()
    assert all(c.startswith("python -m darnet_pl +experiment=ablation") for c in commands), card
    assert all(c.endswith(" fold=0..4 -m") for c in commands), card


def control_report(user: User, command: str) -> None:
    """The raw and the shortcut-control sweeps in one report: the control's rows beside the raw ones."""
    for experiment in ("darnet", "shortcut_control"):
        sweep(("dual",), 5)(user, f"python -m darnet_pl +experiment={experiment} fold=0..4 -m")
    result = user.ok(command)
    out = user.home / "outputs" / "report"
    table = (out / "table_iv.md").read_text()
    assert "DARNet (shortcut control)" in table and "DARNet (paper)" in table, explain(result)
    assert "control test set:" in table, explain(result)


def search(user: User, command: str) -> None:
    """One tiny trial of the Optuna search: its study is stored, and the trial never reaches the test set."""
    result = user.ok(f"{command} {TINY} hydra.sweeper.n_trials=1")
    sweep = user.home / "outputs" / "search" / "sweep"
    assert (sweep / "optuna.db").is_file(), explain(result)
    jobs = sorted(p.parent for p in sweep.rglob("config_resolved.yaml"))
    assert len(jobs) == 1 and not (jobs[0] / "test_metrics.json").exists(), explain(result)


def wandb_sync(user: User, command: str) -> None:
    """No network here: the path the README gives must name exactly the offline run the W&B command wrote."""
    run = user.run_folder('python -m darnet_pl +experiment=smoke "logger=[csv,wandb]" debug=tiny')
    pattern = command.split()[-1].replace("<run>", run.name)
    runs = glob.glob(str(user.home / pattern))
    assert len(runs) == 1, (pattern, runs)
    log_bytes = next(Path(runs[0]).glob("run-*.wandb")).read_bytes()
    assert b"test/3class/auc_macro" in log_bytes and b"val/loss" in log_bytes


def prepare_dry_run(user: User, command: str) -> None:
    result = user.ok(command)
    lines = result.stdout.splitlines()
    assert any(line.startswith("subset") for line in lines), result.stdout
    for chunk in datasets.CHUNKS:
        assert any(line.startswith(chunk) for line in lines), result.stdout
    assert "dry run: nothing converted" in result.stdout


def table_one(user: User, command: str) -> None:
    """The split summary from the packaged split alone (no image read): the paper's Table I, as the README shows."""
    prepare_dry_run(user, command)
    result = user.ok(command)
    page = documented_commands()[command]  # the page that shows the command shows the table too
    readme_block = page.read_text().split("scans (patients)\nsubset", 1)[1].split("```")[0]
    expected = ("subset" + readme_block).strip().splitlines()
    printed = result.stdout.split("scans (patients)\n", 1)[1].strip().splitlines()[: len(expected)]
    assert [line.split() for line in printed] == [line.split() for line in expected]


def ccii_root_variable(user: User, command: str) -> None:
    """The variable the README exports is the one the CC-CCII recipes read; without it they stop in one line."""
    assert command == "export DARNET_CCII_ROOT=/data/CC-CCII"
    runs = user.home / "outputs" / "darnet" / "runs"
    before = sorted(runs.iterdir()) if runs.is_dir() else []
    result = run_as_typed("python -m darnet_pl +experiment=darnet", user.home)
    assert result.returncode == 2, explain(result)
    assert result.stderr.strip().splitlines() == [
        "error: data=ccii needs the CC-CCII download: set data.root=/path/to/CC-CCII or DARNET_CCII_ROOT"
    ]
    assert (sorted(runs.iterdir()) if runs.is_dir() else []) == before, "a stub run folder was left behind"


def prepare(user: User, command: str) -> None:
    result = user.ok(command)
    assert "ingest:" in result.stdout + result.stderr, explain(result)
    assert list(user.home.glob("data/cache/*/*/records.csv")), "no cache written under ./data/cache"


def prepare_cleaned(user: User, command: str) -> None:
    prepare(user, command)
    assert list(user.home.glob("data/cache/ccii-cleaned-*/*/selection_report.csv"))


def audit(user: User, command: str) -> None:
    result = user.ok(command)
    probes = json.loads((user.home / "audit.json").read_text())["probes"]
    names = {probe["name"] for probe in probes}
    assert {"slice_count", "file_type", "histogram"} <= names, probes
    assert all({"name", "auc", "flagged", "per_class"} <= set(probe) for probe in probes)
    assert "slice_count" in result.stdout


def audit_models(user: User, command: str) -> None:
    """The audit of CC-CCII with the model-level checks of the five folds of the darnet sweep."""
    sweep(("dual",), 5)(user, "python -m darnet_pl +experiment=darnet fold=0..4 -m")
    result = user.ok(command)
    audit = json.loads((user.home / "audit.json").read_text())
    checks = audit["model_checks"]
    assert len(checks["checkpoints"]) == 5 and checks["subset"] == "test", explain(result)
    assert "model checks: 5 checkpoint(s)" in result.stdout
    flagged = {(p["name"], c) for p in audit["probes"] for c in p["flagged_classes"]}
    assert {(r["probe"], r["class"]) for r in checks["feature_probes"]} == flagged


def _best_checkpoints(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("checkpoints/epoch*.ckpt"))


def predict(user: User, command: str) -> None:
    darnet_run = user.run_folder("python -m darnet_pl +experiment=darnet debug=tiny")
    sweep(("dual",), 5)(user, "python -m darnet_pl +experiment=darnet fold=0..4 -m")
    sweep_dir = user.home / "outputs" / "darnet" / "sweep"
    best = _best_checkpoints(sweep_dir)
    for name, source in (("a.ckpt", best[0]), ("b.ckpt", best[1])):
        shutil.copy(source, user.home / name)
    typed = command.replace("outputs/darnet/runs/2026-01-01_10-00-00.000000", str(darnet_run.relative_to(user.home)))
    typed = typed.replace("sweep_dir", str(sweep_dir.relative_to(user.home)))
    result = user.run(typed)
    if "--device cuda" in command:  # no GPU here: what a CPU user sees, then the same command on the CPU
        assert result.returncode == 2 and result.stderr.strip().startswith("error:"), explain(result)
        assert len(result.stderr.strip().splitlines()) == 1 and "cuda" in result.stderr.lower(), explain(result)
        typed = typed.replace("--device cuda", "--device cpu")
        result = user.run(typed)
    assert result.returncode == 0, explain(result)
    out = user.home / "results" if "--out results/" in typed else _newest(user.home / "darnet-predictions")
    with (out / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {"prob_CP", "prob_NCP", "prob_Normal"} <= set(rows[0])
    if "--cam" in typed:
        assert len([p for p in (out / "cam").iterdir() if (p / "montage.png").is_file()]) == 2


def predict_tta(user: User, command: str) -> None:
    sweep(("dual",), 5)(user, "python -m darnet_pl +experiment=darnet fold=0..4 -m")
    typed = command.replace("sweep_dir", "outputs/darnet/sweep")
    result = user.ok(typed)
    payload = json.loads((user.home / "tta" / "predictions.json").read_text())
    assert payload["tta"] is True, explain(result)
    assert (user.home / "tta" / "patient_predictions.csv").is_file(), explain(result)


def evaluate(user: User, command: str) -> None:
    sweep(("dual",), 5)(user, "python -m darnet_pl +experiment=darnet fold=0..4 -m")
    result = user.ok(command.replace("sweep_dir", "outputs/darnet/sweep"))
    out = user.home / "external"
    for name in ("predictions.csv", "metrics.json", "roc.png", "confusion.png", "reliability.png", "summary.json"):
        assert (out / name).is_file(), f"{name} missing\n{explain(result)}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert "3class/accuracy" in metrics["metrics"], metrics


def _newest(folder: Path) -> Path:
    return max(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns)


def export(user: User, command: str) -> None:
    run = user.home / "run" / "checkpoints"
    if not (run / "epoch041.ckpt").is_file():
        run.mkdir(parents=True)
        darnet_run = user.run_folder("python -m darnet_pl +experiment=darnet debug=tiny")
        shutil.copy(_best_checkpoints(darnet_run)[0], run / "epoch041.ckpt")
    result = user.ok(command)
    out = user.home / "deploy" if "--out deploy/" in command else run
    stem = "darnet" if "--name darnet" in command else "epoch041"
    assert (out / f"{stem}.onnx").is_file() and (out / f"{stem}.json").is_file(), explain(result)
    if "--format onnx" not in command:
        assert (out / f"{stem}.torchscript.pt").is_file()


def bundle_export(user: User, command: str) -> None:
    sweep(("dual",), 5)(user, "python -m darnet_pl +experiment=darnet fold=0..4 -m")
    result = user.ok(command)
    bundle = user.home / "darnet_bundle"
    for name in ("configs/metadata.json", "configs/inference.json", "models/model.pt", "models/model.ts", "LICENSE"):
        assert (bundle / name).is_file(), f"{name} missing\n{explain(result)}"
    assert len(json.loads((bundle / "configs" / "metadata.json").read_text())["darnet"]["checkpoints"]) == 5


def bundle_run(user: User, command: str) -> None:
    bundle_export(user, "darnet-export --ckpt outputs/darnet/sweep/dual --format bundle --out darnet_bundle")
    result = user.ok(command)
    with (user.home / "darnet_bundle" / "eval" / "predictions.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == len(list((user.home / "data" / "nifti").glob("*.nii.gz"))), explain(result)
    assert all(abs(sum(float(v) for v in row[1:]) - 1.0) < 1e-5 for row in rows)


# --- the README, command by command ------------------------------------------------------------------------------

ABLATION = ("none", "ca", "da", "dual")
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
CASES: dict[str, Callable[[User, str], None]] = {
    "make train": make_target("-m darnet_pl +experiment=smoke", then="python -m darnet_pl +experiment=smoke"),
    "make test": make_target("-m pytest"),
    "python -m darnet_pl +experiment=smoke": single_run(),
    "python -m darnet_pl +experiment=darnet": single_run(),
    "python -m darnet_pl +experiment=smoke model.attention=ca fold=2 trainer.max_epochs=20": overrides_run(
        {"model.attention": "ca", "fold": 2, "trainer.max_epochs": 20}
    ),
    "python -m darnet_pl +experiment=smoke debug=fdr": as_typed("\ndone: outputs/smoke/runs/"),
    "python -m darnet_pl +experiment=smoke --cfg job": as_typed("task_name: smoke"),
    "python -m darnet_pl +experiment=darnet fold=0..4 -m": sweep(("dual",), 5),
    "python -m darnet_pl +experiment=ablation fold=0..4 -m": sweep(ABLATION, 5),
    "python -m darnet_pl +experiment=smoke fold=0..4 -m": sweep(("dual",), 5),
    # the same 20 jobs as the paper's ablation above, which runs for real: here every job is composed only
    "python -m darnet_pl +experiment=smoke_ablation fold=0..4 -m": dry_run(BASIC_LAUNCHER),
    "darnet-report outputs/ablation/sweep": report,
    "darnet-model-card outputs/ablation/sweep": model_card,
    "python -m darnet_pl +experiment=search -m": search,
    "darnet-report outputs/darnet/sweep outputs/shortcut_control/sweep": control_report,
    'python -m darnet_pl +experiment=smoke "logger=[csv,wandb]"': single_run(),
    "wandb sync outputs/smoke/runs/<run>/wandb/offline-run-*": wandb_sync,
    "python -m darnet_pl +experiment=ablation fold=0..4 -m trainer=ddp": dry_run(BASIC_LAUNCHER, devices=2),
    "python -m darnet_pl +experiment=smoke debug=tiny trainer.max_epochs=2 fold=0..1 -m trainer=ddp_cpu": sweep(
        ("dual",), 2
    ),
    "python -m darnet_pl +experiment=ablation fold=0..4 -m hydra/launcher=slurm trainer=slurm "
    "hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=4": dry_run(
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", devices=4
    ),
    "python -m darnet_pl +experiment=ablation fold=0..4 -m hydra/launcher=slurm trainer=slurm "
    "hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=4 hydra.launcher.timeout_min=720": dry_run(
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", devices=4
    ),
    "python -m darnet_pl +experiment=darnet trainer=ddp trainer.devices=4": composed(
        {"trainer.devices": 4, "trainer.strategy._target_": "darnet_pl.distributed.ddp.HydraDDPStrategy"}
    ),
    "python -m darnet_pl +experiment=ablation fold=0..4 -m hydra/launcher=local_parallel hydra.launcher.n_jobs=4": (
        dry_run("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher")
    ),
    "make bench": make_target("-m darnet_pl.bench"),
    "export DARNET_CCII_ROOT=/data/CC-CCII": ccii_root_variable,
    "darnet-prepare data=ccii +dry_run=true": table_one,
    "darnet-prepare data=ccii": prepare,
    "python -m darnet_pl +experiment=shortcut_control fold=0..4 -m": sweep(("dual",), 5),
    "darnet-prepare data=ccii data.source.apply_cleaning=true data.source.exclude_segmented=true": (prepare_cleaned),
    "darnet-prepare data=folder data.scan_list=/data/my_scans.csv +dry_run=true": prepare_dry_run,
    "darnet-audit data=folder data.scan_list=/data/my_scans.csv": audit,
    "darnet-audit --ckpt outputs/darnet/sweep data=ccii data.root=/data/CC-CCII": audit_models,
    "python -m darnet_pl +experiment=darnet data=folder data.scan_list=/data/my_scans.csv": single_run(),
    "darnet-predict --ckpt outputs/darnet/runs/2026-01-01_10-00-00.000000 scan.nii.gz dicom/patient018/series2": (
        predict
    ),
    "darnet-predict --ckpt sweep_dir --cam --out results/ my_scans.csv": predict,
    "darnet-predict --ckpt a.ckpt --ckpt b.ckpt --cam --cam-method gradcam --cam-class NCP --device cuda "
    "scans/*.nii.gz": predict,
    "darnet-predict --ckpt sweep_dir --tta --out tta/ /data/my_scans.csv": predict_tta,
    "darnet-evaluate --ckpt sweep_dir --scans /data/my_scans.csv --out external/": evaluate,
    "darnet-export --ckpt run/checkpoints/epoch041.ckpt": export,
    "darnet-export --ckpt run/checkpoints/epoch041.ckpt --format onnx --out deploy/ --name darnet --opset 18": export,
    "darnet-export --ckpt outputs/darnet/sweep/dual --format bundle --out darnet_bundle": bundle_export,
    "cd darnet_bundle && python -m monai.bundle run --config_file configs/inference.json --dataset_dir /data/nifti": (
        bundle_run
    ),
    "make test-fast": make_target("-m pytest"),
    "make lint": make_for_real,
    "make install": make_always("-e '.[dev,export,cluster,search,bundle,docs]'"),
    "make docs": make_target("mkdocs build --strict"),  # the build itself: tests/e2e/test_docs_site.py
}


def test_every_documented_command_has_a_case() -> None:
    commands = documented_commands()
    assert [f"{commands[c].name}: {c}" for c in commands if c not in CASES] == [], "commands without a test case"
    assert [c for c in CASES if c not in commands] == [], "cases for commands no longer in the README or the docs"


@pytest.mark.parametrize("command", list(documented_commands()), ids=lambda c: c[:100])
def test_readme_command(user: User, command: str) -> None:
    CASES[command](user, command)
