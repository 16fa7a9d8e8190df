"""``darnet-prepare`` in this process (Hydra's compose + ``prepare``): its printed summary, in a fraction of the time
of a subprocess. The entry point itself is tested in tests/cli/test_prepare.py."""

from __future__ import annotations

from pathlib import Path

import pytest


def prepare_output(capsys: pytest.CaptureFixture[str], cache_dir: Path, *overrides: str) -> str:
    """What ``darnet-prepare <overrides>`` prints (exit code 0 required), with the cache under ``cache_dir``."""
    from hydra import compose, initialize_config_dir

    from darnet_pl.cli.prepare import CONFIG_DIR, prepare
    from darnet_pl.config.resolvers import register_resolvers

    register_resolvers()
    settings = (f"data.cache_dir={cache_dir}", "data.source.workers=0", "+data.source.progress=false")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=[*settings, *overrides])
    capsys.readouterr()
    assert prepare(cfg) == 0
    return capsys.readouterr().out


def row(stdout: str, name: str) -> str:
    """The line of the split summary for chunk ``name``."""
    return next(line for line in stdout.splitlines() if line.split()[:1] == [name])
