"""The V-IRL-VL image: four perspective views around the walker, tiled 2x2 (`reference.md`
§3.5): each view is resized to `resolution` and pasted row-major on a black canvas with a
5-pixel gutter, (2 * resolution + 5) pixels square."""

from __future__ import annotations

import functools
import json
from typing import Sequence

import numpy as np
from PIL import Image

from jaxrl_gen.envs.virl import projection

GUTTER = 5


@functools.lru_cache(maxsize=8)
def load_pano(image_path: str, metadata_path: str) -> tuple[np.ndarray, float]:
  """A panorama as (H, W, 3) uint8 and its north rotation in degrees (cached per process)."""
  try:
    with Image.open(image_path) as image:
      pixels = np.asarray(image.convert("RGB"))
    with open(metadata_path, encoding="utf-8") as f:
      rotation = json.load(f)["rotation"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"cannot read panorama {image_path} and its metadata: {e}") from None
  if not isinstance(rotation, (int, float)):
    raise ValueError(f"{metadata_path}: rotation must be a number, got {rotation!r:.40}")
  pixels.setflags(write=False)
  return pixels, float(rotation)


def tile(views: np.ndarray, resolution: int) -> np.ndarray:
  """Four (S, S, 3) views resized to `resolution` and tiled row-major with a black gutter."""
  side = 2 * resolution + GUTTER
  canvas = np.zeros((side, side, 3), dtype=np.uint8)
  for i, view in enumerate(views):
    if view.shape[0] != resolution:
      view = np.asarray(Image.fromarray(view).resize((resolution, resolution),
                                                     Image.Resampling.BICUBIC))
    y, x = (i // 2) * (resolution + GUTTER), (i % 2) * (resolution + GUTTER)
    canvas[y:y + resolution, x:x + resolution] = view
  return canvas


def render(pano: np.ndarray, rotation: float, heading: float, *, view_headings: Sequence[float],
           fov: float, view_size: int, resolution: int, interpolation: str) -> np.ndarray:
  """The 2x2 grid seen from a panorama by a walker facing `heading`; views at heading +
  each of `view_headings` (row-major)."""
  views = projection.perspective(pano, [heading + offset for offset in view_headings], rotation,
                                 fov=fov, size=view_size, interpolation=interpolation)
  return tile(views, resolution)
