"""Geodesy on (lat, lng) pairs in degrees: distances, bearings, interpolation, and the heading
words V-IRL uses (compass directions, landmark relations, relative turns)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# The mean Earth radius of the reference's haversine (6371.0 km).
EARTH_RADIUS_M = 6_371_000.0

COMPASS = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
# Where a landmark is relative to the walker: the same 8 sectors, clockwise from ahead.
RELATIONS = ("front", "right front", "right", "right behind", "behind", "left behind", "left",
             "left front")
TURNS = ("left", "right", "slightly left", "slightly right")


def haversine(a: Sequence[float], b) -> np.ndarray | float:
  """Great-circle distance in metres from point `a` to `b`, or to each row of an (N, 2) `b`."""
  b = np.asarray(b, dtype=np.float64)
  lat1, lng1 = np.radians(a[0]), np.radians(a[1])
  lat2, lng2 = np.radians(b[..., 0]), np.radians(b[..., 1])
  h = (np.sin((lat2 - lat1) / 2) ** 2
       + np.cos(lat1) * np.cos(lat2) * np.sin((lng2 - lng1) / 2) ** 2)
  d = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
  return float(d) if d.ndim == 0 else d


def bearing(a: Sequence[float], b: Sequence[float]) -> float:
  """Initial compass bearing in degrees [0, 360) of the great circle from `a` to `b`."""
  lat1, lat2 = math.radians(a[0]), math.radians(b[0])
  dlng = math.radians(b[1] - a[1])
  x = math.sin(dlng) * math.cos(lat2)
  y = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlng)
  return math.degrees(math.atan2(x, y)) % 360.0


def interpolate(a: Sequence[float], b: Sequence[float], i: int, n: int) -> tuple[float, float]:
  """The point at fraction i/n of the way from `a` to `b`, linear in degrees (as the reference)."""
  t = i / n
  return (a[0] * (1 - t) + b[0] * t, a[1] * (1 - t) + b[1] * t)


def _nearest_sector(angle: float) -> int:
  """Index of the nearest of the 8 directions 0, 45, ..., 315 degrees (angles wrap)."""
  centres = np.arange(8) * 45.0
  diff = np.abs(centres - (angle % 360.0))
  diff = np.where(diff > 180, 360 - diff, diff)
  return int(np.argmin(diff))


def compass(heading: float) -> str:
  """The compass word nearest to a heading: 177 -> 'south'."""
  return COMPASS[_nearest_sector(heading)]


def relation(agent_heading: float, heading_to: float) -> str:
  """Where something at bearing `heading_to` lies for a walker facing `agent_heading`."""
  return RELATIONS[_nearest_sector(heading_to - agent_heading)]


def wrap180(angle: float) -> float:
  """An angle difference in (-180, 180]."""
  angle = angle % 360.0
  return angle - 360.0 if angle > 180.0 else angle


def turn(previous: float, new: float, wrap: bool = True) -> str:
  """The relative turn label from heading `previous` to `new` (`reference.md` §3.3).

  `wrap=False` reproduces the reference, which takes the raw difference: 350 -> 10 is -340,
  'left' (`decisions.md` row 9).
  """
  d = wrap180(new - previous) if wrap else new - previous
  if d < -45:
    return "left"
  if d > 45:
    return "right"
  return "slightly left" if d <= 0 else "slightly right"


def local_to_latlng(origin: Sequence[float], east_m, north_m) -> tuple[np.ndarray, np.ndarray]:
  """Latitude and longitude of points given in metres east/north of `origin` (small areas)."""
  lat0 = math.radians(origin[0])
  lat = origin[0] + np.degrees(np.asarray(north_m, dtype=np.float64) / EARTH_RADIUS_M)
  lng = origin[1] + np.degrees(np.asarray(east_m, dtype=np.float64)
                               / (EARTH_RADIUS_M * math.cos(lat0)))
  return lat, lng
