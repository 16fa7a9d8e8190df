"""``LogCAMSamples``: CAM montages of a few test scans, logged to Weights & Biases at the end of testing.

A look at where the tested model looks belongs next to its metrics: a model that scores well by reading the
scanner table or the image border shows it here at once. The callback does nothing unless a ``WandbLogger`` is
attached, and works only on rank 0 (with the scans of rank 0's share of the test set): no cost, no extra
dependency and no synchronisation otherwise.

It keeps up to ``n`` scans per class as they pass through ``on_test_batch_end`` (as uint8, 1/4 of the memory of
the float batch), then picks ``n`` of them, alternating classes, computes their maps with the tested weights
(inside Lightning's inference mode: see ``darnet_pl.explain.cam``) and logs one montage image per scan under
``key``, captioned with the scan id, the true and predicted class.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from darnet_pl.explain.cam import CAM_METHODS, explain
from darnet_pl.models import DARNet

log = logging.getLogger(__name__)


class LogCAMSamples(pl.Callback):
    """Log CAM (or Grad-CAM) montages of ``n`` test scans to W&B; a no-op without a WandbLogger or off rank 0.

    Args:
        n: scans to log (spread over the classes).
        method: ``"cam"`` (the paper's) or ``"gradcam"``.
        n_slices: axial slices per montage.
        key: the W&B key of the image panel.
    """

    def __init__(self, n: int = 4, method: str = "cam", n_slices: int = 12, key: str = "test/cam") -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"LogCAMSamples: n must be positive, got {n}")
        if method not in CAM_METHODS:
            raise ValueError(f"LogCAMSamples: method must be one of {CAM_METHODS}, got {method!r}")
        self.n = int(n)
        self.method = method
        self.n_slices = int(n_slices)
        self.key = key
        self._kept: dict[int, list[tuple[torch.Tensor, str]]] = defaultdict(list)
        self._active = False

    @staticmethod
    def wandb_loggers(trainer: pl.Trainer) -> list[Any]:
        """The trainer's WandbLoggers (W&B itself is imported only when one is attached)."""
        from pytorch_lightning.loggers import WandbLogger

        return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._kept = defaultdict(list)
        self._active = bool(trainer.is_global_zero and self.wandb_loggers(trainer))

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active or not isinstance(batch, dict) or "image" not in batch:
            return
        images = batch["image"]
        labels = batch.get("label")
        scan_ids = batch.get("scan_id") or [f"batch{batch_idx}-{i}" for i in range(len(images))]
        for i in range(len(images)):
            label = int(labels[i]) if labels is not None else -1
            if len(self._kept[label]) < self.n:
                volume = (images[i, 0].detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
                self._kept[label].append((volume, str(scan_ids[i])))

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active:
            return
        chosen = self._pick()
        self._kept = defaultdict(list)
        if not chosen:
            return
        net = getattr(pl_module, "net", pl_module)
        if not isinstance(net, DARNet):
            log.warning("LogCAMSamples: %s has no DARNet to explain; nothing logged", type(pl_module).__name__)
            return
        class_names = list(getattr(pl_module, "class_names", [str(k) for k in range(net.num_classes)]))
        images, captions = self.render(net, chosen, class_names)
        for logger in self.wandb_loggers(trainer):
            logger.log_image(key=self.key, images=images, caption=captions)

    def _pick(self) -> list[tuple[torch.Tensor, str, int]]:
        """Up to ``n`` kept scans, taking one of each class in turn."""
        queues = {label: list(items) for label, items in sorted(self._kept.items())}
        chosen: list[tuple[torch.Tensor, str, int]] = []
        while len(chosen) < self.n and any(queues.values()):
            for label, queue in queues.items():
                if queue and len(chosen) < self.n:
                    volume, scan_id = queue.pop(0)
                    chosen.append((volume, scan_id, label))
        return chosen

    def render(
        self, net: DARNet, chosen: Sequence[tuple[torch.Tensor, str, int]], class_names: Sequence[str]
    ) -> tuple[list[Any], list[str]]:
        """Montage images (H, W, 3 uint8 arrays) and captions of the chosen scans."""
        from darnet_pl.explain.overlay import figure_to_rgb, montage_figure

        device = next(net.parameters()).device
        x = torch.stack([volume for volume, _, _ in chosen]).to(device=device, dtype=torch.float32)[:, None] / 255.0
        result = explain(net, x, self.method)
        images, captions = [], []
        for i, (volume, scan_id, label) in enumerate(chosen):
            probabilities = {name: float(p) for name, p in zip(class_names, result.probabilities[i], strict=True)}
            predicted = class_names[int(result.probabilities[i].argmax())]
            truth = class_names[label] if 0 <= label < len(class_names) else "?"
            caption = f"{scan_id}: true {truth}, predicted {predicted}"
            figure = montage_figure(
                volume.numpy(), result.maps[i].cpu().numpy(), title=f"{caption}; {self.method.upper()} for "
                f"{class_names[int(result.class_index[i])]}", probabilities=probabilities, n_slices=self.n_slices,
            )  # fmt: skip
            images.append(figure_to_rgb(figure))
            captions.append(caption)
        return images, captions
