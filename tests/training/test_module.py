"""DARNetModule: the training guards and what a checkpoint carries."""

from __future__ import annotations

import pytest
import torch

from darnet_pl.training.module import DARNetModule


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


def test_out_of_memory_names_the_settings_that_would_fit(capsys: pytest.CaptureFixture[str]) -> None:
    from darnet_pl.training.run import advice_on_out_of_memory
    from darnet_pl.utils.errors import OutOfMemoryAdvice, user_errors
    from tests.helpers.cli import compose_config

    cfg = compose_config("+experiment=darnet", "trainer=gpu")
    with pytest.raises(OutOfMemoryAdvice) as caught, advice_on_out_of_memory(cfg, "training"):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    message = str(caught.value)
    assert message.startswith("out of GPU memory during training (input 64x224x224, batch 8 on 1 device(s)")
    assert message.index("trainer.precision=bf16-mixed") < message.index("model.activation_checkpointing=true")
    assert "data.batch_size=4 trainer.accumulate_grad_batches=2" in message
    # what is already on is not suggested again
    lean = compose_config("+experiment=darnet", "trainer=gpu", "trainer.precision=bf16-mixed", "data.batch_size=1")
    with pytest.raises(OutOfMemoryAdvice) as caught, advice_on_out_of_memory(lean, "testing"):
        raise torch.OutOfMemoryError("CUDA out of memory")
    assert "precision=bf16-mixed;" not in str(caught.value) and "data.batch_size" not in str(caught.value)
    # and at the command line it is one line and exit code 2
    with pytest.raises(SystemExit) as exited, user_errors(), advice_on_out_of_memory(cfg, "training"):
        raise torch.OutOfMemoryError("CUDA out of memory")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of GPU memory during training") and len(err.strip().splitlines()) == 1
