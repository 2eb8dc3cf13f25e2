"""The GPS -> panorama mapping: JSON on disk, a nearest-panorama index, and a converter from
the published pickle.

The published data ship the mapping as `gps_pano_mapping.pkl`, a pickled dict
`{(lat, lng): pano_id}`. Unpickling runs whatever code the file names, so jaxrl_gen never
unpickles implicitly: the converter refuses unless the caller passes an explicit trust flag,
and even then only plain containers and numpy scalars may be rebuilt. Everything else reads
the JSON it writes:

    python -m jaxrl_gen.envs.virl.mapping --trust-pickle gps_pano_mapping.pkl gps_pano_mapping.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import sys
from typing import Iterable

import numpy as np
from scipy import spatial

from jaxrl_gen.envs.virl import geo

FORMAT = "jaxrl_gen/gps_pano_mapping/v1"
JSON_NAME = "gps_pano_mapping.json"
PICKLE_NAME = "gps_pano_mapping.pkl"


def write_json(path: str, entries: Iterable[tuple[float, float, str]]):
  """Writes `[(lat, lng, pano_id), ...]` (floats round-trip exactly through JSON)."""
  rows = [[float(lat), float(lng), str(pano)] for lat, lng, pano in entries]
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"format": FORMAT, "entries": rows}, f)


def read_json(path: str) -> list[tuple[float, float, str]]:
  """The entries of a mapping JSON file; a malformed file is a ValueError naming it."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read panorama mapping {path}: {e}") from None
  if not isinstance(data, dict) or data.get("format") != FORMAT:
    raise ValueError(f"{path} is not a {FORMAT} file")
  entries = []
  for i, row in enumerate(data.get("entries", ())):
    if (not isinstance(row, list) or len(row) != 3 or not isinstance(row[2], str)
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row[:2])):
      raise ValueError(f"{path}: entry {i} is not [lat, lng, pano_id]: {row!r:.80}")
    entries.append((float(row[0]), float(row[1]), row[2]))
  if not entries:
    raise ValueError(f"{path}: the mapping is empty")
  return entries


class PanoIndex:
  """Nearest panorama to a position, within a radius (the reference's offline "relocation")."""

  def __init__(self, entries: list[tuple[float, float, str]]):
    self.geocodes = np.array([(lat, lng) for lat, lng, _ in entries], dtype=np.float64)
    self.pano_ids = [pano for _, _, pano in entries]
    # Chord distance between unit vectors orders points as the great-circle distance does.
    self._tree = spatial.cKDTree(_unit_vectors(self.geocodes))

  def __len__(self) -> int:
    return len(self.pano_ids)

  def snap(self, geocode, radius_m: float) -> tuple[tuple[float, float], str] | None:
    """`((lat, lng), pano_id)` of the nearest panorama closer than `radius_m`, else None."""
    _, i = self._tree.query(_unit_vectors(np.asarray(geocode, dtype=np.float64)[None]))
    i = int(i[0])
    if geo.haversine(geocode, self.geocodes[i]) < radius_m:
      return (float(self.geocodes[i, 0]), float(self.geocodes[i, 1])), self.pano_ids[i]
    return None


def _unit_vectors(latlng: np.ndarray) -> np.ndarray:
  lat, lng = np.radians(latlng[:, 0]), np.radians(latlng[:, 1])
  return np.stack([np.cos(lat) * np.cos(lng), np.cos(lat) * np.sin(lng), np.sin(lat)], axis=1)


class _PlainUnpickler(pickle.Unpickler):
  """Rebuilds only plain containers and numpy scalars; any other global is refused."""

  ALLOWED = {
      ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "list"), ("builtins", "float"),
      ("builtins", "int"), ("builtins", "str"), ("collections", "OrderedDict"),
      ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
      ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
  }

  def find_class(self, module: str, name: str):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from the pickle")
    return super().find_class(module, name)


def convert_pickle(src: str, dst: str, *, trust: bool = False) -> int:
  """Converts the published `{(lat, lng): pano_id}` pickle to mapping JSON; returns the count.

  Refuses (ValueError) unless `trust=True`: loading a pickle can execute code.
  """
  if not trust:
    raise ValueError(
        f"refusing to unpickle {src}: loading a pickle can run arbitrary code. Convert it only if "
        "you trust where it came from, with trust=True (--trust-pickle on the command line)")
  with open(src, "rb") as f:
    try:
      mapping = _PlainUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
      raise ValueError(f"{src}: not a plain GPS -> panorama pickle ({e})") from None
  if not isinstance(mapping, dict):
    raise ValueError(f"{src}: expected a dict {{(lat, lng): pano_id}}, got {type(mapping).__name__}")
  entries = []
  for key, pano in mapping.items():
    if not (isinstance(key, (tuple, list)) and len(key) == 2 and isinstance(pano, str)):
      raise ValueError(f"{src}: entry {key!r:.60} -> {pano!r:.40} is not (lat, lng) -> pano_id")
    entries.append((float(key[0]), float(key[1]), pano))
  tmp = dst + ".tmp"
  write_json(tmp, entries)
  os.replace(tmp, dst)
  return len(entries)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m jaxrl_gen.envs.virl.mapping",
      description="Convert the published gps_pano_mapping.pkl to the JSON jaxrl_gen reads.")
  parser.add_argument("src", help="the pickle, e.g. gps_pano_mapping.pkl")
  parser.add_argument("dst", help="the JSON to write, e.g. gps_pano_mapping.json")
  parser.add_argument("--trust-pickle", action="store_true",
                      help="I trust this file: unpickling it may run code it contains")
  args = parser.parse_args(argv)
  try:
    count = convert_pickle(args.src, args.dst, trust=args.trust_pickle)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {count} entries to {args.dst}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
