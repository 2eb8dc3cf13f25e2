"""Perspective views of equirectangular panoramas, vectorised in numpy.

Conventions (those of the reference's V-IRL platform, `reference.md` §3.5):
- a panorama column at fraction f of the width (pixel centres at (u + 0.5) / W) looks at
  compass bearing 360 f - rotation, where `rotation` is the panorama's north rotation from
  its `.metadata.json`: a view with compass heading h is centred on f = ((h + rotation) mod
  360) / 360 (the reference's "heading - 180, plus the north rotation" in its longitude frame);
- rows run from straight up (top) to straight down (bottom), the horizon in the middle;
- views are pinhole images with pitch 0: the focal length is (size / 2) / tan(fov / 2), and
  bearings grow to the right.

With pitch 0 a view's yaw only shifts longitudes, so each output column reads one panorama
column and each output row's sampling position is the same for every heading. Sampling is
separable: the panorama is resampled horizontally at the view's columns, then vertically
at the (cached) rows. Interpolation is bicubic (Keys, a = -0.75, OpenCV's INTER_CUBIC, as
the reference) or bilinear; columns wrap around, rows clamp. Pixel centres sit at (u + 0.5) /
W: the reference scaled by W - 1 instead, which shifts its columns by up to half a pixel and
leaves a one-pixel seam.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

INTERPOLATIONS = ("cubic", "bilinear")
_CUBIC_A = -0.75


def _taps(coord: np.ndarray, interpolation: str) -> tuple[np.ndarray, np.ndarray]:
  """Integer sample positions (..., T) and their weights (..., T) for fractional `coord`."""
  base = np.floor(coord)
  frac = (coord - base)[..., None]
  if interpolation == "bilinear":
    offsets = np.array([0, 1])
    weights = np.concatenate([1 - frac, frac], axis=-1)
  else:
    offsets = np.array([-1, 0, 1, 2])
    d = np.abs(frac - offsets)
    a = _CUBIC_A
    weights = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                       ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
  return base.astype(np.int64)[..., None] + offsets, weights.astype(np.float32)


@functools.lru_cache(maxsize=32)
def _geometry(size: int, fov: float, height: int, interpolation: str):
  """Per-column longitude offsets (degrees) and the vertical taps, shared by every heading."""
  focal = 0.5 * size / np.tan(np.radians(fov) / 2)
  x = (np.arange(size) - (size - 1) / 2) / focal  # right
  y = x[:, None]  # down (square views)
  dlon = np.degrees(np.arctan(x))
  lat = np.arctan2(y, np.sqrt(x[None, :] ** 2 + 1))  # (size, size), positive downward
  rows = (lat / np.pi + 0.5) * height - 0.5
  row_index, row_weight = _taps(rows, interpolation)
  return dlon, np.clip(row_index, 0, height - 1), row_weight


def perspective(pano: np.ndarray, headings: Sequence[float], rotation: float = 0.0, *,
                fov: float = 90.0, size: int = 640,
                interpolation: str = "cubic") -> np.ndarray:
  """Square views (N, size, size, C) uint8 of an equirectangular (H, W, C) uint8 panorama,
  one per compass heading (degrees), pitch 0."""
  if interpolation not in INTERPOLATIONS:
    raise ValueError(f"interpolation={interpolation!r}: must be one of {INTERPOLATIONS}")
  if pano.ndim != 3:
    raise ValueError(f"panorama must be (H, W, C), got shape {pano.shape}")
  height, width = pano.shape[:2]
  dlon, row_index, row_weight = _geometry(int(size), float(fov), height, interpolation)
  pano = pano.astype(np.float32)
  strips = []
  for heading in headings:
    cols = ((float(heading) + rotation + dlon) % 360.0) / 360.0 * width - 0.5
    col_index, col_weight = _taps(cols, interpolation)  # (size, T)
    strips.append(np.einsum("hjtc,jt->hjc", pano[:, col_index % width], col_weight))
  strips = np.stack(strips)  # (N, H, size, C)
  columns = np.arange(size)[None, :, None]
  gathered = strips[:, row_index, columns]  # (N, size, size, T, C)
  views = np.einsum("nijtc,ijt->nijc", gathered, row_weight)
  return np.clip(np.rint(views), 0, 255).astype(np.uint8)
