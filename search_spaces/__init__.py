"""What can be built: search spaces whose architectures are exact, immutable, buildable values.

``get_space(name)`` returns a registered space; ``list_spaces()`` names them all.
"""

from search_spaces import shipped  # noqa: F401  (registers the shipped spaces)
from search_spaces.base import LatencyUnit, SearchSpace, count_macs
from search_spaces.mbconv import (
    DNA_OPS,
    DNA_STAGES,
    MIXED_OPS,
    MBConvArch,
    MBConvOp,
    MBConvSpace,
    MBConvStage,
    StageSpec,
)
from search_spaces.registry import get_space, list_spaces, register_space
from search_spaces.vit import ViTArch, ViTBlock, ViTLayer, ViTSpace

__all__ = [
    "DNA_OPS", "DNA_STAGES", "MIXED_OPS", "LatencyUnit", "MBConvArch", "MBConvOp", "MBConvSpace", "MBConvStage",
    "SearchSpace", "StageSpec", "ViTArch", "ViTBlock", "ViTLayer", "ViTSpace", "count_macs", "get_space", "list_spaces",
    "register_space",
]
