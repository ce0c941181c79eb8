"""Vision side of the model: the SigLIP tower and Dynamic-S2 multi-scale feature merging."""

from nvila.vision.dynamic_s2 import map_to_tiles, merge_scales, tiles_to_map
from nvila.vision.tower import VisionTower

__all__ = ["VisionTower", "map_to_tiles", "merge_scales", "tiles_to_map"]
