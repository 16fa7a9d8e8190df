"""`python -m darnet_pl [overrides]`: the Hydra entry point. Nothing but wiring."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from darnet_pl.cli_args import RangeError, normalize_argv
from darnet_pl.resolvers import register_resolvers

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")
MONITORED_TEST_METRIC = "test/3class/auc_macro"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _run(cfg: DictConfig) -> float | None:
    from darnet_pl.errors import user_errors
    from darnet_pl.train import train

    with user_errors():
        metrics = train(cfg)
    return metrics.get(MONITORED_TEST_METRIC)


def main() -> None:
    """Console entry: normalises the command line (ranges, -m, debug presets), then hands it to Hydra."""
    register_resolvers()
    try:
        sys.argv = normalize_argv(sys.argv)
    except RangeError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    _run()


if __name__ == "__main__":
    main()
