"""V-IRL environment speed: env steps/s (V-IRL-L and V-IRL-VL) and rendered views/s.

    python benchmarks/virl_bench.py [--cache_dir DIR] [--seconds S]

Steps are taken by the scripted expert (every answer correct, so every VL step renders a new
2x2 grid) on the default synthetic city, at the reference sizes (640 px views, FOV 90,
resized to 1200 px: a 2405 px grid). Views are timed against a named peer: the reference's
formulation of the projection (a full per-pixel ray map rotated by a 3x3 matrix, atan2 /
arcsin, and a 16-tap bicubic gather per pixel, i.e. what its `cv2.remap(INTER_CUBIC)` call
computes), written in numpy, against `projection.perspective` (separable: with pitch 0 each
output column reads one panorama column).

`rows()` gives the figures to `benchmarks/env_bench.py`, which also prints them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from env_bench import timed  # noqa: E402  (this directory is on sys.path when run as a script)
from jaxrl_gen import eval as evaluation  # noqa: E402
from jaxrl_gen.envs import core, virl  # noqa: E402
from jaxrl_gen.envs.virl import projection, routes, synth, views  # noqa: E402


def _steps(params, seed=[0]):  # noqa: B006 - a counter across calls
  """The steps of one expert episode (a new one each call), run as evaluation runs it."""
  seed[0] += 1
  bench = core.Benchmark("expert", "virl", params, 1, seed[0])
  return len(evaluation.run(evaluation.expert_policy("virl"), bench, batch_size=1))


def reference_remap_view(pano: np.ndarray, heading: float, rotation: float, fov: float,
                         size: int) -> np.ndarray:
  """The peer: the reference's per-pixel formulation, bicubic (a = -0.75) in numpy."""
  h, w = pano.shape[:2]
  yaw = math.radians(((heading - 180) % 360 + rotation) % 360)
  focal = 0.5 * size / math.tan(math.radians(fov) / 2)
  c = (size - 1) / 2
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
  rays = np.stack([(xs - c) / focal, (ys - c) / focal, np.ones_like(xs)], -1)
  rot = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0],
                  [-math.sin(yaw), 0, math.cos(yaw)]])
  rays = rays @ rot.T
  rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
  lon, lat = np.arctan2(rays[..., 0], rays[..., 2]), np.arcsin(rays[..., 1])
  u = (lon / (2 * np.pi) + 0.5) * (w - 1)
  v = (lat / np.pi + 0.5) * (h - 1)
  u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
  a, out = -0.75, np.zeros((size, size, 3))

  def weight(d):
    d = np.abs(d)
    return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                    ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
  for dv in range(-1, 3):
    wv = weight(v - (v0 + dv))
    rows = np.clip(v0 + dv, 0, h - 1)
    for du in range(-1, 3):
      out += (wv * weight(u - (u0 + du)))[..., None] * pano[rows, (u0 + du) % w]
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def rows(seconds: float = 3.0, cache_dir: str = "") -> list[tuple[str, int, float, str]]:
  """(name, count, seconds, unit) rows on the default synthetic city (generated once)."""
  language = virl.EnvParams(cache_dir=cache_dir)
  vision = virl.EnvParams(cache_dir=cache_dir, language_only=False)
  city = virl.env.load(language)
  state, _ = virl.reset(0, language)
  _steps(language)  # outside the timings: the first evaluation run starts JAX (its PRNG key)
  pano, rotation = views.load_pano(*routes.pano_paths(city.root, state.point.pano_id))
  out = [("V-IRL-L steps (expert, resets incl.)", *timed(lambda: _steps(language), seconds),
          "steps"),
         ("V-IRL-VL steps (a grid per step)", *timed(lambda: _steps(vision), seconds), "steps")]
  for interpolation in projection.INTERPOLATIONS:
    out.append((f"views 640px FOV90 ({interpolation})", *timed(lambda i=interpolation: len(
        projection.perspective(pano, [0, 90, 180, 270], rotation, fov=90, size=640,
                               interpolation=i)), seconds), "views"))
  out.append(("views 640px, peer per-pixel remap", *timed(
      lambda: len(reference_remap_view(pano, 30.0, rotation, 90, 640)[:1]), seconds), "views"))
  out.append(("2x2 grids (4 cubic views -> 2405px)", *timed(lambda: len(views.render(
      pano, rotation, 0.0, view_headings=vision.view_headings, fov=90, view_size=640,
      resolution=1200, interpolation="cubic")[:1]), seconds), "grids"))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cache_dir", default="", help="synthetic data cache (default ~/.cache)")
  parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
  args = parser.parse_args()
  print(f"$ python {' '.join(sys.argv)}")
  print(f"synthetic city: {synth.ensure('city', 0, args.cache_dir)}")
  rates = {}
  for name, count, elapsed, unit in rows(args.seconds, args.cache_dir):
    rates[name] = count / elapsed
    print(f"{name:<40} {count / elapsed:>10,.2f} {unit}/s   ({count} in {elapsed:.2f} s)")
  print(f"cubic views: {rates['views 640px FOV90 (cubic)'] / rates['views 640px, peer per-pixel remap']:.1f}x"
        " the per-pixel remap peer")


if __name__ == "__main__":
  main()
