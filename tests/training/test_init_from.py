"""``model.init_from``: a training run starts from a weights file, says what it loaded, and refuses bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.forked import run_forked
from tests.helpers.user import explain

pytestmark = pytest.mark.slow

TINY = ("+experiment=smoke", "debug=tiny", "logger=none", "test=false")


def train(*args: str, cwd: Path):
    return run_forked("darnet_pl", *TINY, *args, cwd=cwd, timeout=300)


def test_a_run_starts_from_a_darnet_checkpoint_and_says_so(tiny_checkpoint: Path, cwd: Path) -> None:
    result = train(f"model.init_from={tiny_checkpoint}", cwd=cwd)
    assert result.returncode == 0, explain(result)
    said = [line for line in (result.stdout + result.stderr).splitlines() if "init_from tiny.ckpt" in line]
    assert len(said) == 1, explain(result)
    assert "DARNet layout, loaded" in said[0] and "classifier replaced" in said[0]


@pytest.mark.parametrize("kind", ["missing", "text"])
def test_a_file_that_is_no_weights_is_one_line(kind: str, cwd: Path) -> None:
    path = cwd / "weights.pth"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    result = train(f"model.init_from={path}", cwd=cwd)
    assert result.returncode == 2, explain(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "weights.pth" in errors[0] and "Traceback" not in result.stderr, explain(result)
    assert not list(cwd.rglob("*.ckpt")), "a refused run left checkpoints behind"
