"""Reading route data in the published V-IRL layout (`reference.md` §3.1):

    <data_dir>/route_infos.json       [routes, num_routes]; each route has start_place,
                                      init_heading, route_results.geocode_list, dest_place and
                                      milestone_info (one JSON-like block per geocode)
    <data_dir>/gps_pano_mapping.json  the GPS -> pano_id mapping (converted from the published
                                      pickle with `python -m jaxrl_gen.envs.virl.mapping`)
    <data_dir>/street_views/{pano_id}.jpg, {pano_id}.metadata.json ("rotation": north rotation)
    <data_dir>/splits.json            optional {"train": [i, ...], "heldout": [...]} route indices
                                      (the synthetic cities have one; the published data do not)

A city is loaded once per directory and process (`load_city` is cached); everything in it
is immutable.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import types

from jaxrl_gen.envs.virl import geo, mapping

ROUTES_NAME = "route_infos.json"
SPLITS_NAME = "splits.json"
STREET_VIEWS = "street_views"
SPLITS = ("all", "train", "heldout")
NO_LANDMARK = "No landmark nearby"  # the milestone default (singular "landmark", as the reference)


@dataclasses.dataclass(frozen=True)
class Milestone:
  """One `milestone_info` block: the leg towards the next geocode."""

  heading: int  # `to_next_intersection_heading` in whole degrees, e.g. 177
  direction: str  # its compass word, e.g. 'south'
  landmark: str  # `landmarks`: "<Name> is on your <relation>" or "No landmark nearby"


@dataclasses.dataclass(frozen=True)
class Route:
  start: tuple[float, float]  # start_place.relocated_geocode
  init_heading: int  # 0 when absent: a random heading is drawn at reset
  geocodes: tuple[tuple[float, float], ...]  # route_results.geocode_list (turns, destination)
  milestones: tuple[Milestone, ...]  # one per geocode
  destination: str  # dest_place.name


@dataclasses.dataclass(frozen=True, eq=False)
class City:
  """A loaded data directory."""

  root: str
  routes: tuple[Route, ...]
  splits: types.MappingProxyType  # split name -> tuple of route indices
  index: mapping.PanoIndex

  def split(self, name: str) -> tuple[int, ...]:
    if name not in self.splits:
      raise ValueError(
          f"route_split={name!r}: {os.path.join(self.root, SPLITS_NAME)} does not exist or has no"
          f" {name!r} list; data without splits (the published routes) need route_split='all'")
    return self.splits[name]



def pano_paths(root: str, pano_id: str) -> tuple[str, str]:
  """The image and metadata paths of a panorama in the data directory `root`."""
  base = os.path.join(root, STREET_VIEWS, pano_id)
  return base + ".jpg", base + ".metadata.json"


def parse_milestone_blocks(text: str) -> list[dict[str, str]]:
  """The `milestone_info` string as a list of {key: value} dicts, as the reference reads it:
  split on '}', one `"key": "value",` per line, quotes and trailing commas stripped."""
  result = []
  for block in text.split("}"):
    block = block.strip().lstrip("{").strip()
    fields = {}
    for line in block.split("\n"):
      line = line.strip().rstrip(",")
      key, sep, value = line.partition(":")
      if line and sep:
        fields[key.strip().strip("\"'")] = value.strip().strip("\"'")
    if fields:
      result.append(fields)
  return result


def _milestone(fields: dict[str, str], where: str) -> Milestone:
  heading_text = fields.get("to_next_intersection_heading")
  if heading_text is None:
    raise ValueError(f"{where}: no to_next_intersection_heading")
  degrees, _, rest = heading_text.partition("(")
  direction = rest.partition(")")[0]
  try:
    heading = int(degrees.strip())
  except ValueError:
    raise ValueError(f"{where}: to_next_intersection_heading {heading_text!r} is not"
                     " '<degrees> (<compass>)'") from None
  if direction not in geo.COMPASS:
    raise ValueError(f"{where}: unknown compass direction {direction!r} in {heading_text!r}")
  return Milestone(heading, direction, fields.get("landmarks", NO_LANDMARK))


def _geocode(value, where: str) -> tuple[float, float]:
  if (not isinstance(value, (list, tuple)) or len(value) != 2
      or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)):
    raise ValueError(f"{where}: expected [lat, lng], got {value!r:.80}")
  return (float(value[0]), float(value[1]))


def parse_route(info: dict, where: str) -> Route:
  """One entry of `route_infos.json`; a missing or malformed field is a ValueError naming it."""
  try:
    start = _geocode(info["start_place"]["relocated_geocode"], f"{where}.start_place")
    geocodes = tuple(_geocode(g, f"{where}.geocode_list[{i}]")
                     for i, g in enumerate(info["route_results"]["geocode_list"]))
    blocks = parse_milestone_blocks(info["milestone_info"])
    destination = str(info.get("dest_place", {}).get("name", ""))
  except (KeyError, TypeError, AttributeError) as e:
    raise ValueError(f"{where}: missing or malformed field ({type(e).__name__}: {e})") from None
  milestones = tuple(_milestone(b, f"{where}.milestone_info[{i}]") for i, b in enumerate(blocks))
  if not geocodes or len(milestones) != len(geocodes):
    raise ValueError(f"{where}: {len(milestones)} milestone blocks for {len(geocodes)} geocodes;"
                     " there must be one per geocode")
  init_heading = info.get("init_heading", 0) or 0
  if not isinstance(init_heading, (int, float)) or not math.isfinite(init_heading):
    raise ValueError(f"{where}.init_heading: expected degrees, got {init_heading!r:.40}")
  return Route(start, int(init_heading), geocodes, milestones, destination)


def _read_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read {path}: {e}") from None


def check_layout(root: str, images: bool = False) -> None:
  """Raises a one-line ValueError naming `root` and the files it lacks, unless it holds the
  route data and the panorama mapping (and, with `images`, the street views)."""
  expected = [ROUTES_NAME, mapping.JSON_NAME] + [STREET_VIEWS + "/"] * images
  missing = [name for name in expected if not os.path.exists(os.path.join(root, name))]
  if not missing:
    return
  found = f"missing {', '.join(missing)}" if os.path.isdir(root) else "no such directory"
  message = (f"env.data_dir={root!r}: {found}; expected the published V-IRL layout:"
             f" {', '.join(expected)}")
  pickled = os.path.join(root, mapping.PICKLE_NAME)
  if mapping.JSON_NAME in missing and os.path.isfile(pickled):
    message += (f"; convert {pickled} first, if you trust it: python -m"
                f" jaxrl_gen.envs.virl.mapping --trust-pickle {pickled}"
                f" {os.path.join(root, mapping.JSON_NAME)}")
  raise ValueError(message)


@functools.lru_cache(maxsize=16)
def load_city(root: str) -> City:
  """Loads (once per process) the route data directory `root`."""
  check_layout(root)
  routes_path = os.path.join(root, ROUTES_NAME)
  data = _read_json(routes_path)
  if not (isinstance(data, list) and data and isinstance(data[0], list)):
    raise ValueError(f"{routes_path}: expected [routes, num_routes]")
  routes = tuple(parse_route(info, f"{routes_path}: route {i}") for i, info in enumerate(data[0]))
  if not routes:
    raise ValueError(f"{routes_path}: no routes")

  index = mapping.PanoIndex(mapping.read_json(os.path.join(root, mapping.JSON_NAME)))

  splits = {"all": tuple(range(len(routes)))}
  splits_path = os.path.join(root, SPLITS_NAME)
  if os.path.isfile(splits_path):
    raw = _read_json(splits_path)
    for name in ("train", "heldout"):
      indices = raw.get(name) if isinstance(raw, dict) else None
      if not (isinstance(indices, list) and indices
              and all(isinstance(i, int) and 0 <= i < len(routes) for i in indices)):
        raise ValueError(f"{splits_path}: {name!r} must be a non-empty list of route indices")
      splits[name] = tuple(indices)
  return City(root, routes, types.MappingProxyType(splits), index)
