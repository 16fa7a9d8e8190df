"""Explanations of DARNet's decisions: CAM / Grad-CAM maps, depth-attention curves, and their pictures and files.

``cam`` needs only torch; ``overlay`` (PNG, matplotlib) and ``nifti`` (nibabel) are imported from their modules
when needed. The W&B callback that logs CAM samples during training lives in ``training.wandb_cam``.
"""

from darnet_pl.explain.cam import (
    CAM_METHODS,
    Explanation,
    class_activation_map,
    depth_attention_weights,
    explain,
    grad_cam,
    has_depth_attention,
)

__all__ = [
    "CAM_METHODS",
    "Explanation",
    "class_activation_map",
    "depth_attention_weights",
    "explain",
    "grad_cam",
    "has_depth_attention",
]
