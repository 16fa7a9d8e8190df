"""Speed options (training/speed.py): memory format, activation checkpointing and compile keep what the model
computes."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from darnet_pl.models import DARNet, count_parameters
from darnet_pl.training.speed import apply_speed_options


def test_auto_memory_format_follows_the_trainer(tmp_path) -> None:
    from darnet_pl.training.module import DARNetModule

    for precision, layout in (("bf16-mixed", torch.channels_last_3d), ("32-true", torch.contiguous_format)):
        module = DARNetModule(width=4, input_size=(8, 32, 32), optimizer=torch.optim.Adam, memory_format="auto")
        trainer = pl.Trainer(accelerator="cpu", precision=precision, logger=False, default_root_dir=tmp_path)
        module.trainer = trainer
        module.setup("fit")
        assert module.net.stem[0].weight.is_contiguous(memory_format=layout), precision
        assert module.memory_format == layout


def test_speed_options_keep_parameters_and_state_dict() -> None:
    plain = DARNet(input_size=(8, 32, 32), width=4)
    tuned = apply_speed_options(
        DARNet(input_size=(8, 32, 32), width=4), memory_format="channels_last_3d", activation_checkpointing=True
    )
    assert count_parameters(plain) == count_parameters(tuned)
    assert plain.state_dict().keys() == tuned.state_dict().keys()
    assert tuned.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    with pytest.raises(ValueError, match="memory_format"):
        apply_speed_options(plain, memory_format="nhwc")


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    net = DARNet(input_size=(8, 32, 32), width=4)
    x, y = torch.rand(2, 1, 8, 32, 32), torch.tensor([0, 2])
    grads = []
    for checkpointing in (False, True):
        net.activation_checkpointing = checkpointing
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
