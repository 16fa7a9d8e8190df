"""DARNetModule: the training guards and what a checkpoint carries."""

from __future__ import annotations

import pytest
import torch

from darnet_pl.lit.module import DARNetModule


def _module() -> DARNetModule:
    return DARNetModule(attention="dual", width=4, input_size=(16, 32, 32), optimizer=torch.optim.Adam, scheduler=None)


def test_non_finite_loss_stops_training_with_a_clear_message() -> None:
    module = _module()
    batch = {"image": torch.full((2, 1, 16, 32, 32), float("nan")), "label": torch.tensor([0, 1])}
    with pytest.raises(FloatingPointError, match=r"non-finite training loss .* at epoch 0, batch 5"):
        module.training_step(batch, 5)


def test_architecture_and_labels_travel_in_the_hyperparameters() -> None:
    hparams = _module().hparams
    assert hparams.attention == "dual" and hparams.width == 4
    assert tuple(hparams.input_size) == (16, 32, 32)
    assert tuple(hparams.class_names) == ("CP", "NCP", "Normal")
    assert "optimizer" not in hparams


def test_configure_optimizers_uses_the_partials() -> None:
    module = DARNetModule(
        width=4,
        input_size=(16, 32, 32),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        scheduler=lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[30, 60], gamma=0.1),
    )
    config = module.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["lr_scheduler"]["scheduler"].milestones == {30: 1, 60: 1}
