"""Configuration that cannot work is refused before work starts, naming the full key (issue #19 family 6):
out-of-range seeds, non-positive sizes and counts, probabilities outside [0, 1], device counts, and sizes beyond the
machine's memory; loader workers beyond the CPU count are capped with a warning.

Every value is checked on the composed config (``config.checks.check_config``, what training and ``darnet-prepare``
call first), and a few through the real entry points, where the one ``error:`` line and exit 2 come out.
"""

from __future__ import annotations

import pytest

from darnet_pl.config.checks import SEED_MAX, check_config
from darnet_pl.config.resolvers import register_resolvers
from darnet_pl.utils.worker_pool import available_cpus
from tests.helpers.cli import compose_config
from tests.helpers.faults import only_line
from tests.helpers.forked import run_forked
from tests.helpers.user import explain

SMOKE = ("+experiment=smoke", "debug=fdr")
COMPOSED = ("+experiment=smoke", "+debug=fdr")  # as the entry point rewrites SMOKE
PROB = "expected a probability from 0 to 1"

REFUSED = [
    ("seed=-5", f"seed=-5: expected an integer from 0 to {SEED_MAX} (numpy's seed range)"),
    (f"seed={SEED_MAX + 1}", f"seed={SEED_MAX + 1}: expected an integer from 0 to {SEED_MAX}"),
    ("data.split_seed=-1", f"data.split_seed=-1: expected an integer from 0 to {SEED_MAX}"),
    ("data.n_folds=1", "data.n_folds=1: expected an integer of at least 2 (one fold validates, the others train)"),
    ("model.ca_reduction=0", "model.ca_reduction=0: expected a positive integer"),
    ("model.in_channels=0", "model.in_channels=0: expected a positive integer"),
    ("synthetic_patients_per_class=0", "synthetic_patients_per_class=0: expected a positive integer"),
    ("data.source.scans_per_patient=[3,1]", "data.source.scans_per_patient=[3,1]: expected [min,max] scans per"),
    ("synthetic_lesion_scale=-1", "synthetic_lesion_scale=-1: expected a positive number"),
    ("data.augment.flip_prob=2", f"data.augment.flip_prob=2: {PROB}"),
    ("data.augment.affine_prob=-0.5", f"data.augment.affine_prob=-0.5: {PROB}"),
    ("data.augment.rotate_degrees=-10", "data.augment.rotate_degrees=-10: expected 0 or a positive number of degrees"),
    ("trainer.devices=0", "trainer.devices=0: expected a positive number of devices, -1 (all), auto, or a list"),
    ("trainer.devices=[]", "trainer.devices=[]: expected a positive number of devices"),
    ("+trainer.max_steps=0", "trainer.max_steps=0: expected a positive integer (or -1: no limit)"),
    ("callbacks.model_checkpoint.save_top_k=-5", "callbacks.model_checkpoint.save_top_k=-5: expected -1 (all), 0"),
    ("model.width=100000", "model.width=100000: DARNet at this width has about 8.6e+13 parameters"),
    ("data.size=[4000,4000,4000]", "data.size=[4000,4000,4000] with data.batch_size=8: one input batch alone is"),
]
ACCEPTED = ["seed=0", f"seed={SEED_MAX}", "trainer.devices=auto", "trainer.devices=-1", "trainer.devices=[0]",
            "data.augment.flip_prob=1", "callbacks.model_checkpoint.save_top_k=-1", "data.n_folds=2"]  # fmt: skip


@pytest.mark.parametrize(("override", "start"), REFUSED, ids=[o for o, _ in REFUSED])
def test_values_that_cannot_work_are_refused_naming_the_full_key(override: str, start: str) -> None:
    register_resolvers()
    cfg = compose_config(*COMPOSED, override)
    with pytest.raises(ValueError) as refused:
        check_config(cfg)
    assert str(refused.value).startswith(start)


@pytest.mark.parametrize("override", ACCEPTED)
def test_the_edges_of_the_ranges_are_accepted(override: str) -> None:
    register_resolvers()
    check_config(compose_config(*COMPOSED, override))


THROUGH_THE_ENTRY_POINT = ["seed=-5", "data.split_seed=-1", "model.width=100000", "trainer.devices=0",
                           "data.augment.flip_prob=2", "model.ca_reduction=0"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("override", THROUGH_THE_ENTRY_POINT)
def test_through_the_entry_point_one_line_exit_2_and_no_run_folder(tmp_path, override: str) -> None:
    result = run_forked("darnet_pl", *SMOKE, override, cwd=tmp_path)
    assert result.returncode == 2, explain(result)
    start = dict(REFUSED)[override]
    assert only_line(result.stderr).startswith(f"error: {start}")
    assert list(tmp_path.iterdir()) == [], "a stub run folder was left behind"


@pytest.mark.slow
def test_prepare_checks_its_data_keys_before_reading_anything(tmp_path) -> None:
    result = run_forked("darnet_pl.cli.prepare", "data=folder", "data.source.workers=-5", cwd=tmp_path)
    assert result.returncode == 2, explain(result)
    assert only_line(result.stderr) == (
        "error: data.source.workers=-5: expected -1 (one per CPU core), 0 (none) or a positive integer"
    )


@pytest.mark.slow
def test_loader_workers_beyond_the_cpu_count_are_capped_with_a_warning(tmp_path) -> None:
    cpus = available_cpus()
    asked = cpus * 8
    result = run_forked("darnet_pl", *SMOKE, f"data.num_workers={asked}", "logger=none", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    warning = f"data.num_workers={asked} is more than the {cpus} CPU core(s) available: using {cpus}"
    assert sum(warning in line for line in result.stdout.splitlines()) == 1, result.stdout[-3000:]
    assert list(tmp_path.glob("outputs/smoke/runs/*/test_metrics.json")) and not list(tmp_path.rglob(".job.lock"))
