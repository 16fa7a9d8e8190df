"""Our CAM and Grad-CAM against ``monai.visualize`` on the same trained DARNet.

MONAI's ``CAM`` computes ``fc(F)`` per feature voxel - our raw class activation plus the class's bias - and leaves
out the ReLU (our maps keep the evidence *for* the class, as the paper's Sec. IV-E shows it); its default
normaliser maps (min, max) to (1, 0). With the bias removed, the ReLU applied and our min-max scaling it gives our
maps. MONAI's ``GradCAM`` equals ours scan by scan, but in a batch whose scans are explained for different classes
it backpropagates ``logits[:, class_idx]`` - every chosen class of every scan - so each map mixes the classes of
the others; ours scores each scan for its own class. That, and its hooks (registered on the model for good, ReLUs
switched to out-of-place, parameter gradients filled by ``backward``), is why ``darnet_pl.explain`` keeps its own.
"""

from __future__ import annotations

import copy

import pytest
import torch

from darnet_pl.explain.cam import class_activation_map, grad_cam, normalise, raw_class_activation, upsample_to_input
from darnet_pl.runs.checkpoints import load_for_inference

visualize = pytest.importorskip("monai.visualize")


@pytest.fixture(scope="module")
def model_and_input(tiny_checkpoint):
    model, _ = load_for_inference(tiny_checkpoint)
    x = torch.rand((2, 1, *model.input_size), generator=torch.Generator().manual_seed(3))
    return model, x


def test_our_cam_is_monai_cam_without_bias_with_relu(model_and_input):
    model, x = model_and_input
    ours = class_activation_map(model, x, class_index=[1, 2])
    monai_cam = visualize.CAM(nn_module=copy.deepcopy(model), target_layers="layer4", fc_layers="fc",
                              postprocessing=lambda m: m)  # fmt: skip
    with torch.no_grad():
        raw = monai_cam.compute_map(x, class_idx=torch.tensor([1, 2]))[:, 0]  # (N, d, h, w): w . F + b
        features = model.features(x)
        target = torch.tensor([1, 2])
        bias = model.fc.bias[target].view(-1, 1, 1, 1)
        torch.testing.assert_close(raw - bias, raw_class_activation(features, model.fc, target), atol=1e-5, rtol=1e-5)
        maps = normalise(upsample_to_input(torch.relu(raw - bias), x.shape[2:]))
    torch.testing.assert_close(maps, ours.maps, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(normalise(upsample_to_input(raw, x.shape[2:])), ours.maps, atol=1e-3)  # bias, no ReLU


def test_our_grad_cam_is_monai_grad_cam_scan_by_scan(model_and_input):
    model, x = model_and_input
    targets = [0, 2]
    ours = grad_cam(model, x, class_index=targets).maps
    monai_gradcam = visualize.GradCAM(nn_module=copy.deepcopy(model), target_layers="layer4", postprocessing=normalise)
    for i, target in enumerate(targets):
        theirs = monai_gradcam(x[i : i + 1], class_idx=target)[:, 0]
        torch.testing.assert_close(theirs, ours[i : i + 1], atol=1e-5, rtol=1e-5)
    mixed = monai_gradcam(x, class_idx=torch.tensor(targets))[:, 0]  # both classes' scores summed for both scans
    assert (mixed - ours).abs().max() > 1e-3
