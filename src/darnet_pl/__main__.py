"""`python -m darnet_pl [overrides]`: the Hydra entry point. Nothing but wiring."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _run(cfg: DictConfig) -> float | None:
    from darnet_pl.errors import user_errors
    from darnet_pl.train import train

    with user_errors():
        metrics = train(cfg)
    return metrics.get("test/3class/auc_macro")


def main() -> None:
    _run()


if __name__ == "__main__":
    sys.exit(main())
