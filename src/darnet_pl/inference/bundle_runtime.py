"""What an exported MONAI bundle runs (``configs/inference.json`` points its ``_target_`` entries here).

``python -m monai.bundle run --config_file configs/inference.json`` needs only MONAI and this package installed:

- ``DARNetBundleNetwork``: the network (``network_def``) - one DARNet, or the fold models of a sweep ensemble - whose
  output, through a softmax, is exactly what ``darnet-predict`` reports for the same checkpoints: one model gives its
  logits divided by its temperature (``softmax(logits / T)``); an ensemble gives the log of the mean of its members'
  calibrated softmax outputs (a softmax of that is the mean itself).
- ``ScanClassifier``: the evaluator; each scan of the dataset through the preprocessing (the MONAI transform chain of
  ``darnet_pl.data.volume_transforms``), the inferer and the post-processing (softmax, MONAI's
  ``SaveClassificationd`` writing one CSV row of class probabilities per scan). Plain torch, so a bundle needs no
  pytorch-ignite (MONAI's ``SupervisedEvaluator`` does).
- ``scan_datalist``: the scans of a folder (NIfTI files and DICOM series folders) as the dataset's data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from darnet_pl.data.readers.scans import is_ignored, is_nifti, is_slice_image
from darnet_pl.models import DARNet

MEMBER_KEYS = ("attention", "in_channels", "num_classes", "input_size", "width", "ca_reduction")
"""The DARNet constructor arguments a bundle stores for each member (``network_def#members``)."""


class DARNetBundleNetwork(nn.Module):
    """One DARNet or an ensemble, with the temperatures fitted on validation; softmax(output) = the probabilities."""

    def __init__(self, members: Sequence[Mapping[str, Any]], temperatures: Sequence[float] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("a bundle network needs at least one DARNet")
        self.models = nn.ModuleList(
            DARNet(**{k: (tuple(v) if k == "input_size" else v) for k, v in m.items() if k in MEMBER_KEYS})
            for m in members
        )
        values = [1.0] * len(members) if temperatures is None else [float(t) for t in temperatures]
        if len(values) != len(members) or not all(math.isfinite(t) and t > 0 for t in values):
            raise ValueError(f"temperatures {values}: one positive number per member ({len(members)})")
        self.register_buffer("temperatures", torch.tensor(values, dtype=torch.float32))

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.models[0].input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.models) == 1:
            return self.models[0](x).float() / self.temperatures[0]
        log_probs = [
            torch.log_softmax(model(x).float() / self.temperatures[i], dim=1) for i, model in enumerate(self.models)
        ]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(self.models))


def scan_datalist(dataset_dir: str | os.PathLike[str], key: str = "image") -> list[dict[str, str]]:
    """``[{key: path}]`` for every NIfTI file and DICOM series folder directly in ``dataset_dir``, sorted."""
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: dataset_dir is not a folder")
    items = []
    for entry in sorted(folder.iterdir()):
        if is_ignored(entry.name):
            continue
        nifti = entry.is_file() and is_nifti(entry.name)
        if nifti or (entry.is_dir() and not any(is_slice_image(p.name) for p in entry.iterdir())):
            items.append({key: str(entry)})
    if not items:
        raise FileNotFoundError(f"{folder}: no NIfTI files or DICOM series folders in it")
    return items


class ScanClassifier:
    """The bundle's evaluator: every item of ``dataset`` (already preprocessed) through ``inferer(x, network)``, then
    ``postprocessing`` on ``{**item, "pred": (K,) output}``; ``run()`` returns the post-processed items."""

    def __init__(
        self,
        dataset: Sequence[Mapping[Hashable, Any]],
        network: nn.Module,
        inferer: Any,
        postprocessing: Any = None,
        device: str | torch.device = "cpu",
        image_key: str = "image",
        pred_key: str = "pred",
    ) -> None:
        self.dataset = dataset
        self.network = network
        self.inferer = inferer
        self.postprocessing = postprocessing
        self.device = torch.device(device)
        self.image_key = image_key
        self.pred_key = pred_key

    def run(self) -> list[dict[Hashable, Any]]:
        self.network.eval()
        results = []
        with torch.inference_mode():
            for index in range(len(self.dataset)):
                item = dict(self.dataset[index])
                x = torch.as_tensor(item[self.image_key]).as_subclass(torch.Tensor)
                x = x.to(device=self.device, dtype=torch.float32)[None]
                pred = self.inferer(x, self.network)[0].float().cpu()
                item[self.pred_key] = pred
                results.append(self.postprocessing(item) if self.postprocessing is not None else item)
        return results
