"""Painting synthetic street-view panoramas: sky, buildings along the streets, roads in the
street directions and each nearby landmark's sign at its true bearing.

The panorama follows the conventions of `projection` (column fraction f looks at compass
bearing 360 f - rotation), so a sign painted here appears in a rendered view exactly where
the landmark is. Visual styles (palettes, fog) are the visual-OOD axis.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CAMERA_HEIGHT_M = 2.5
SETBACK_M = 11.0  # street centre line to the facades
ROAD_HALF_WIDTH_M = 5.0
MAX_DEPTH_M = 300.0
SIGN_WIDTH_M, SIGN_BOTTOM_M, SIGN_TOP_M = 8.0, 3.0, 7.0


@dataclasses.dataclass(frozen=True)
class Style:
  sky_zenith: tuple[int, int, int]
  sky_horizon: tuple[int, int, int]
  ground: tuple[int, int, int]
  road: tuple[int, int, int]
  marking: tuple[int, int, int]
  facades: tuple[tuple[int, int, int], ...]
  window: tuple[int, int, int]
  fog: tuple[int, int, int] = (0, 0, 0)
  fog_per_m: float = 0.0  # fog density: the facade colour fades to `fog` with distance


STYLES = {
    "day": Style((70, 130, 210), (185, 215, 240), (150, 150, 140), (70, 70, 75), (240, 240, 230),
                 ((170, 120, 95), (200, 190, 170), (140, 150, 160), (180, 160, 130),
                  (120, 110, 105)), (60, 80, 100)),
    "dusk": Style((40, 40, 100), (250, 150, 90), (110, 95, 90), (55, 50, 55), (230, 200, 150),
                  ((120, 80, 80), (150, 120, 110), (90, 80, 100), (140, 100, 70)),
                  (250, 200, 120)),
    "night": Style((5, 5, 20), (30, 30, 60), (40, 40, 45), (25, 25, 28), (180, 180, 120),
                   ((45, 45, 55), (60, 55, 50), (35, 40, 50)), (255, 220, 120)),
    "snow": Style((150, 170, 200), (225, 230, 240), (240, 240, 245), (170, 170, 180),
                  (255, 255, 255), ((150, 90, 80), (110, 120, 130), (200, 200, 205)),
                  (80, 90, 110), (230, 232, 240), 0.004),
    "fog": Style((170, 175, 180), (205, 208, 210), (140, 140, 138), (95, 95, 98),
                 (210, 210, 200), ((120, 125, 130), (150, 140, 130), (100, 105, 110)),
                 (70, 75, 80), (200, 203, 206), 0.012),
    "desert": Style((90, 150, 220), (240, 220, 180), (215, 180, 130), (120, 100, 80),
                    (250, 240, 210), ((220, 180, 130), (200, 150, 100), (235, 210, 170)),
                    (90, 60, 40)),
    "autumn": Style((100, 140, 190), (230, 200, 160), (150, 110, 70), (80, 70, 65),
                    (240, 220, 170), ((160, 70, 40), (190, 120, 50), (130, 90, 60)),
                    (50, 40, 35)),
    "overcast": Style((120, 125, 135), (175, 178, 185), (125, 128, 125), (80, 82, 85),
                      (220, 220, 220), ((110, 110, 115), (140, 135, 125), (90, 95, 100)),
                      (50, 55, 60), (170, 172, 178), 0.003),
    "neon": Style((20, 0, 40), (80, 20, 120), (35, 30, 45), (20, 18, 30), (0, 255, 230),
                  ((60, 20, 90), (20, 60, 90), (90, 20, 60)), (255, 60, 200)),
    "sepia": Style((150, 120, 90), (220, 195, 160), (160, 135, 105), (100, 85, 70),
                   (230, 210, 180), ((170, 140, 105), (130, 105, 80), (190, 165, 130)),
                   (80, 60, 45)),
}


@dataclasses.dataclass(frozen=True)
class Sign:
  bearing: float  # compass bearing from the panorama, degrees
  distance_m: float
  name: str
  color: tuple[int, int, int]


def _hash(*ints: np.ndarray) -> np.ndarray:
  h = np.uint64(1469598103934665603)
  for value in ints:
    h = (h ^ value.astype(np.int64).astype(np.uint64)) * np.uint64(1099511628211)
  return h >> np.uint64(33)


def _rgb(color) -> np.ndarray:
  return np.asarray(color, np.float32)


def _u8(colors: np.ndarray) -> np.ndarray:
  return np.clip(colors + 0.5, 0, 255).astype(np.uint8)


def paint(width: int, style: Style, position: Sequence[float], rotation: float,
          corridors: Sequence[float], signs: Sequence[Sign]) -> np.ndarray:
  """An equirectangular panorama (width/2, width, 3) uint8 taken at `position` (metres east,
  north) on streets running along the compass bearings `corridors`."""
  height = width // 2
  bearings = (360.0 * (np.arange(width) + 0.5) / width - rotation) % 360.0
  elevation = (0.5 - (np.arange(height) + 0.5) / height) * np.pi  # up is positive
  tan_el = np.tan(elevation).astype(np.float32)[:, None]
  diff = np.abs((bearings[None, :] - np.asarray(corridors, np.float64)[:, None] + 180) % 360 - 180)
  off = np.radians(diff.min(axis=0))  # angle to the nearest street direction, per column

  # Per column: facades stand SETBACK_M from the street (far along it, close across it);
  # each 14 m cell of the city is one building with its own height and colour.
  depth = np.minimum(SETBACK_M / np.maximum(np.sin(off), 1e-6), MAX_DEPTH_M)
  rad = np.radians(bearings)
  hit_e, hit_n = position[0] + depth * np.sin(rad), position[1] + depth * np.cos(rad)
  building = _hash(np.floor(hit_e / 14.0), np.floor(hit_n / 14.0))
  top_m = (8.0 + (building % np.uint64(24)).astype(np.float32))[None, :]
  fog = (1 - np.exp(-style.fog_per_m * depth))[:, None].astype(np.float32)
  facade = _rgb(style.facades)[(building // np.uint64(24)) % np.uint64(len(style.facades))]
  facade = facade * (1 - fog) + _rgb(style.fog) * fog
  window = _rgb(style.window) * (1 - fog) + _rgb(style.fog) * fog
  along = (depth * np.cos(off) + (hit_e + hit_n) * 0.5) % 3.0
  window_column = ((along > 0.8) & (along < 2.0))[None, :]

  z = CAMERA_HEIGHT_M + depth.astype(np.float32)[None, :] * tan_el  # height on the facade
  storey = z - 3.2 * np.floor(z * (1 / 3.2))
  is_window = (storey > 1.0) & (storey < 2.2) & (z > 3.0) & (z < top_m - 1.0) & window_column
  is_facade = (z >= 0) & (z <= top_m)

  # Ground in front of the facades: road within the street corridors, dashed centre line.
  ground_depth = CAMERA_HEIGHT_M / np.maximum(-tan_el, 1e-6)
  lateral = ground_depth * np.sin(off).astype(np.float32)[None, :]
  road = lateral < ROAD_HALF_WIDTH_M
  ahead = ground_depth * np.cos(off).astype(np.float32)[None, :]
  dash = ahead - 6.0 * np.floor(ahead * (1 / 6.0)) < 3.0
  marking = road & (lateral < 0.15) & (ahead > 4.0) & dash

  sky_t = np.clip(elevation / (np.pi / 2), 0, 1).astype(np.float32)[:, None]
  sky = _rgb(style.sky_horizon) * (1 - sky_t) + _rgb(style.sky_zenith) * sky_t  # (H, 3)
  image = np.empty((height, width, 3), np.uint8)
  image[:] = _u8(sky)[:, None, :]
  below = np.broadcast_to(tan_el < 0, image.shape[:2])
  for mask, color in ((below, style.ground), (below & road, style.road),
                      (below & marking, style.marking)):
    np.copyto(image, np.asarray(color, np.uint8), where=mask[..., None])
  np.copyto(image, _u8(facade)[None], where=(is_facade & ~is_window)[..., None])
  np.copyto(image, _u8(window)[None], where=(is_facade & is_window)[..., None])

  canvas = Image.fromarray(image)
  for sign in sorted(signs, key=lambda s: -s.distance_m):  # nearer signs drawn on top
    _draw_sign(canvas, sign, rotation)
  return np.asarray(canvas)


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.load_default(size=size)


def _draw_sign(canvas: Image.Image, sign: Sign, rotation: float):
  """A billboard with the landmark's colour and name, centred on its bearing (wrapping)."""
  width, height = canvas.size
  half = np.degrees(np.arctan(SIGN_WIDTH_M / 2 / sign.distance_m))
  top = np.degrees(np.arctan((SIGN_TOP_M - CAMERA_HEIGHT_M) / sign.distance_m))
  bottom = np.degrees(np.arctan((SIGN_BOTTOM_M - CAMERA_HEIGHT_M) / sign.distance_m))
  centre = ((sign.bearing + rotation) % 360.0) / 360.0 * width - 0.5
  x0, x1 = centre - half / 360.0 * width, centre + half / 360.0 * width
  y0, y1 = (0.5 - top / 180.0) * height - 0.5, (0.5 - bottom / 180.0) * height - 0.5
  pole_bottom = (0.5 + np.degrees(np.arctan(CAMERA_HEIGHT_M / sign.distance_m)) / 180.0) * height
  dark = tuple(int(c * 0.35) for c in sign.color)
  text_color = (0, 0, 0) if sum(sign.color) > 380 else (255, 255, 255)
  lines = sign.name.split()  # one word a line: the largest legible text
  size = int(min((y1 - y0) * 0.8 / len(lines), (x1 - x0) * 0.9 / max(map(len, lines)) * 1.8))
  draw = ImageDraw.Draw(canvas)
  for shift in (-width, 0, width):
    if x1 + shift < 0 or x0 + shift > width:
      continue
    cx = centre + shift
    draw.rectangle([cx - 0.5, y1, cx + 0.5, pole_bottom], fill=dark)
    draw.rectangle([x0 + shift, y0, x1 + shift, y1], fill=sign.color, outline=dark,
                   width=max(1, int((y1 - y0) / 12)))
    if size >= 5:
      draw.multiline_text((cx, (y0 + y1) / 2), "\n".join(lines), fill=text_color,
                          font=_font(size), anchor="mm", align="center", spacing=0)
