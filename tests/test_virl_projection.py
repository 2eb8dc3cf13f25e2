"""Equirectangular -> perspective projection and the 2x2 grid (`reference.md` §3.5)."""

import math

import numpy as np
import pytest

from jaxrl_gen.envs.virl import projection, views

WIDTH, HEIGHT = 720, 360


def _pano_with_markers(markers, rotation, sigma=2.5):
  """A grey panorama with Gaussian blobs {(bearing, elevation): rgb} placed by hand."""
  u = np.arange(WIDTH) + 0.5
  v = np.arange(HEIGHT) + 0.5
  pano = np.full((HEIGHT, WIDTH, 3), 90.0)
  for (bearing, elevation), color in markers.items():
    cu = ((bearing + rotation) % 360) / 360 * WIDTH
    cv = (0.5 - elevation / 180) * HEIGHT
    du = (u - cu + WIDTH / 2) % WIDTH - WIDTH / 2  # wraps around
    blob = np.exp(-(du[None, :] ** 2 + (v[:, None] - cv) ** 2) / (2 * sigma ** 2))
    pano += blob[..., None] * (np.asarray(color, float) - 90.0)
  return np.clip(np.rint(pano), 0, 255).astype(np.uint8)


def _centroid(view, color):
  weight = np.clip(view.astype(float) @ (np.asarray(color) - 90.0) / 1e4, 0, None)
  weight = np.where(weight > 0.3 * weight.max(), weight, 0)
  ys, xs = np.indices(weight.shape)
  return (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()


@pytest.mark.parametrize("interpolation", ["cubic", "bilinear"])
def test_marker_at_known_bearing_lands_at_the_pinhole_pixel(interpolation):
  rotation = 40.0
  markers = {(73.0, 0.0): (250, 0, 0), (130.0, 25.0): (0, 250, 0), (350.0, -10.0): (0, 0, 250)}
  pano = _pano_with_markers(markers, rotation)
  size, fov = 201, 90.0
  focal = size / 2 / math.tan(math.radians(fov / 2))
  centre = (size - 1) / 2
  for heading in (53.0, 120.0, 5.0):
    (view,) = projection.perspective(pano, [heading], rotation, fov=fov, size=size,
                                     interpolation=interpolation)
    for (bearing, elevation), color in markers.items():
      alpha = math.radians(((bearing - heading + 180) % 360) - 180)
      if abs(alpha) > math.radians(40):
        continue
      x = centre + focal * math.tan(alpha)
      y = centre - focal * math.tan(math.radians(elevation)) / math.cos(alpha)
      got = _centroid(view, color)
      assert got == pytest.approx((x, y), abs=0.2), (heading, bearing, got, (x, y))
  # Wrap-around: a marker exactly on the panorama's seam (350 + 10 = 360 deg).
  seam = _pano_with_markers({(350.0, 0.0): (0, 0, 250)}, rotation=10.0)
  (view,) = projection.perspective(seam, [350.0], 10.0, fov=fov, size=size,
                                   interpolation=interpolation)
  assert _centroid(view, (0, 0, 250)) == pytest.approx((centre, centre), abs=0.2)


OFFSETS = [0, 45, 90, 135, 180, 225, 270, 315]
COLORS = [(250, 0, 0), (250, 250, 0), (0, 250, 0), (0, 250, 250), (0, 0, 250), (250, 0, 250),
          (250, 130, 0), (0, 0, 0)]


@pytest.mark.parametrize("headings, expected", [
    ((0, 90, 180, 270), [0, 90, 180, 270]),  # the prompt's [front, right / back, left]
    ((-135, -45, 45, 135), [225, 315, 45, 135]),  # the reference code's grid
])
def test_grid_tiles_follow_the_view_headings(headings, expected):
  heading, rotation, resolution = 200.0, 123.0, 48
  markers = {((heading + o) % 360, 0.0): c for o, c in zip(OFFSETS, COLORS)}
  pano = _pano_with_markers(markers, rotation, sigma=6)
  grid = views.render(pano, rotation, heading, view_headings=headings, fov=90, view_size=64,
                      resolution=resolution, interpolation="cubic")
  assert grid.shape == (2 * resolution + 5, 2 * resolution + 5, 3)
  assert (grid[resolution:resolution + 5] == 0).all() and (grid[:, resolution:resolution + 5] == 0).all()
  for tile, offset in enumerate(expected):
    y0, x0 = (tile // 2) * (resolution + 5), (tile % 2) * (resolution + 5)
    centre = grid[y0 + resolution // 2 - 1:y0 + resolution // 2 + 1,
                  x0 + resolution // 2 - 1:x0 + resolution // 2 + 1].reshape(-1, 3).mean(0)
    distances = [np.abs(centre - np.asarray(c)).sum() for c in COLORS]
    assert OFFSETS[int(np.argmin(distances))] == offset, (tile, centre)


def test_views_are_deterministic_uint8_and_validate_arguments():
  pano = np.random.default_rng(0).integers(0, 256, size=(64, 128, 3), dtype=np.uint8)
  a = projection.perspective(pano, [10, 20], 5.0, size=16)
  b = projection.perspective(pano, [10, 20], 5.0, size=16)
  assert a.dtype == np.uint8 and a.shape == (2, 16, 16, 3) and (a == b).all()
  with pytest.raises(ValueError, match="interpolation"):
    projection.perspective(pano, [0], interpolation="nearest")
