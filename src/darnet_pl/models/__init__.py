"""Pure-torch models: importable, countable and exportable without Lightning or Hydra."""

from darnet_pl.models.attention import ChannelAttention3d, DepthAttention3d
from darnet_pl.models.darnet import ATTENTION_VARIANTS, DARNet, DualAttentionBlock, count_parameters

__all__ = [
    "ATTENTION_VARIANTS",
    "ChannelAttention3d",
    "DARNet",
    "DepthAttention3d",
    "DualAttentionBlock",
    "count_parameters",
]
