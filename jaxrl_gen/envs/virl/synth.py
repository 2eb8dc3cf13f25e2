"""Synthetic cities written in the published V-IRL layout (`routes` describes it), so the
whole V-IRL pipeline runs, and can be tested, with no download.

A city is a jittered, rotated street grid with a few streets removed (irregular headings),
named landmarks on street corners (each with its own sign colour), panoramas every
`pano_spacing_m` along the streets and at every intersection, and routes from a point on a
street to a landmark along shortest paths, with `milestone_info` text as the V-IRL
collection pipeline writes it. Panoramas are painted by `synth_render`, every visible
landmark's sign at its true bearing. Everything is deterministic per seed.

Two data sets exist (`KINDS`): 'city', one city in the training style with train / held-out
route splits; 'mini', the visual-OOD benchmark shaped like VLN_mini: 9 small cities in 9
other styles, 2 routes each, in order (panoramas only on the streets those routes use).
`ensure` generates one into a cache directory once.
"""

from __future__ import annotations

import base64
import colorsys
import dataclasses
import functools
import hashlib
import heapq
import json
import math
import os
import shutil
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image

from jaxrl_gen.envs.virl import geo, mapping, routes, synth_render

KINDS = ("city", "mini")
VERSION = 1  # bump when the generated data change: the cache key includes it
TRAIN_STYLE = "day"
MINI_STYLES = ("dusk", "night", "snow", "fog", "desert", "autumn", "overcast", "neon", "sepia")
LANDMARK_OFFSET_M = 10.0  # from the intersection into a corner
VISIBLE_M = 60.0  # signs farther than this are not painted
_ADJECTIVES = ("Amber", "Blue", "Copper", "Crimson", "Golden", "Green", "Hidden", "Ivory",
               "Jade", "Little", "Lucky", "Olive", "Old", "Purple", "Royal", "Silver", "Sunny",
               "Velvet", "Wild", "Yellow")
_NOUNS = ("Anchor", "Badger", "Bridge", "Crane", "Falcon", "Fox", "Garden", "Harbor", "Heron",
          "Lantern", "Lotus", "Maple", "Moon", "Oak", "Otter", "Pine", "River", "Rose", "Star",
          "Tiger")
_KINDS_OF_PLACE = ("Bakery", "Bank", "Books", "Cafe", "Cinema", "Deli", "Diner", "Florist",
                   "Gallery", "Gym", "Hotel", "Market", "Pharmacy", "Pizza", "Tavern", "Theater")


@dataclasses.dataclass(frozen=True)
class CitySpec:
  seed: int
  style: str = TRAIN_STYLE
  name: str = "city"
  origin: tuple[float, float] = (40.7500, -73.9900)  # lat, lng of the grid's first corner
  grid: int = 5  # intersections per side
  block_m: float = 90.0
  jitter_m: float = 12.0
  removed_streets: int = 4
  landmark_fraction: float = 0.6
  pano_spacing_m: float = 12.0
  pano_width: int = 1024
  num_routes: int = 96
  heldout_fraction: float = 0.25
  route_streets_only: bool = False  # panoramas only on the streets routes use (faster)

  def __post_init__(self):
    if self.style not in synth_render.STYLES:
      raise ValueError(f"style={self.style!r}: must be one of {tuple(synth_render.STYLES)}")
    if self.grid < 3 or self.pano_width < 16 or self.num_routes < 1:
      raise ValueError(f"{self}: needs grid >= 3, pano_width >= 16, num_routes >= 1")


@dataclasses.dataclass(frozen=True)
class Landmark:
  name: str
  node: int
  position: tuple[float, float]  # metres east, north
  latlng: tuple[float, float]
  color: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Pano:
  pano_id: str
  position: tuple[float, float]
  latlng: tuple[float, float]
  rotation: float
  corridors: tuple[float, ...]  # compass bearings of the streets through it


@dataclasses.dataclass(frozen=True)
class City:
  """The in-memory model of a synthetic city (what the files are written from)."""

  spec: CitySpec
  nodes: np.ndarray  # (N, 2) metres east, north
  node_latlng: np.ndarray  # (N, 2)
  edges: tuple[tuple[int, int], ...]
  landmarks: tuple[Landmark, ...]
  panos: tuple[Pano, ...]
  node_pano: dict  # node -> index into panos
  edge_panos: dict  # (a, b) -> indices of the panoramas strictly inside the street, a to b
  routes: tuple[dict, ...]  # route_infos.json entries
  heldout: tuple[int, ...]  # indices of the held-out routes
  written: tuple[int, ...]  # indices of the panoramas written (and mapped)


def _planar_bearing(a, b) -> float:
  """Compass bearing from `a` to `b`, both in metres (east, north)."""
  return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0


def _connected(n: int, edges) -> bool:
  adjacency = {i: set() for i in range(n)}
  for a, b in edges:
    adjacency[a].add(b)
    adjacency[b].add(a)
  seen, todo = {0}, [0]
  while todo:
    for nxt in adjacency[todo.pop()] - seen:
      seen.add(nxt)
      todo.append(nxt)
  return len(seen) == n


def _streets(spec: CitySpec, rng: np.random.Generator):
  """A jittered, rotated grid of intersections and the streets between them, with up to
  `removed_streets` streets removed (the city stays connected, no dead ends)."""
  g = spec.grid
  angle = math.radians(rng.uniform(0, 90))
  ij = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="ij"), -1).reshape(-1, 2)
  xy = ij * spec.block_m + rng.uniform(-spec.jitter_m, spec.jitter_m, size=ij.shape)
  rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
  nodes = xy @ rot
  edges = [(i * g + j, i * g + j + 1) for i in range(g) for j in range(g - 1)]
  edges += [(i * g + j, (i + 1) * g + j) for i in range(g - 1) for j in range(g)]
  candidates, removed = list(edges), 0
  for k in rng.permutation(len(edges)):
    if removed == spec.removed_streets:
      break
    a, b = edge = candidates[k]
    rest = [e for e in edges if e != edge]
    degree = lambda v: sum(v in e for e in rest)  # noqa: E731
    if degree(a) >= 2 and degree(b) >= 2 and _connected(len(nodes), rest):
      edges, removed = rest, removed + 1
  return nodes, tuple(edges)


def _neighbours(n: int, edges) -> list[list[int]]:
  adjacency = [[] for _ in range(n)]
  for a, b in edges:
    adjacency[a].append(b)
    adjacency[b].append(a)
  return adjacency


def _corner_bearing(node: int, nodes: np.ndarray, adjacency, rng) -> float:
  """The bearing from an intersection into one of its corners (between two adjacent streets)."""
  streets = sorted(_planar_bearing(nodes[node], nodes[m]) for m in adjacency[node])
  k = int(rng.integers(len(streets)))
  start, end = streets[k], streets[(k + 1) % len(streets)]
  gap = (end - start) % 360.0 or 360.0
  return (start + gap / 2) % 360.0


def _landmarks(spec: CitySpec, nodes, adjacency, rng) -> tuple[Landmark, ...]:
  count = max(2, round(spec.landmark_fraction * len(nodes)))
  hosts = sorted(int(i) for i in rng.choice(len(nodes), size=count, replace=False))
  combos = rng.choice(len(_ADJECTIVES) * len(_NOUNS) * len(_KINDS_OF_PLACE), size=count,
                      replace=False)
  hues = (np.arange(count) / count + rng.uniform()) % 1.0
  hues = hues[rng.permutation(count)]
  landmarks = []
  for node, combo, hue in zip(hosts, combos, hues):
    a, rest = divmod(int(combo), len(_NOUNS) * len(_KINDS_OF_PLACE))
    b, c = divmod(rest, len(_KINDS_OF_PLACE))
    name = f"{_ADJECTIVES[a]} {_NOUNS[b]} {_KINDS_OF_PLACE[c]}"
    corner = math.radians(_corner_bearing(node, nodes, adjacency, rng))
    position = (nodes[node][0] + LANDMARK_OFFSET_M * math.sin(corner),
                nodes[node][1] + LANDMARK_OFFSET_M * math.cos(corner))
    lat, lng = geo.local_to_latlng(spec.origin, position[0], position[1])
    color = tuple(int(round(255 * v)) for v in colorsys.hsv_to_rgb(float(hue), 0.8, 0.95))
    landmarks.append(Landmark(name, node, position, (float(lat), float(lng)), color))
  return tuple(landmarks)


def _pano_id(spec: CitySpec, index: int) -> str:
  digest = hashlib.sha1(f"{spec.name}/{spec.seed}/{index}".encode()).digest()
  return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def _panos(spec: CitySpec, nodes, edges, adjacency, rng):
  """Panoramas at every intersection and every `pano_spacing_m` along every street."""
  positions, corridors, node_pano, edge_panos = [], [], {}, {}
  for node in range(len(nodes)):
    node_pano[node] = len(positions)
    positions.append(nodes[node])
    corridors.append(tuple(_planar_bearing(nodes[node], nodes[m]) for m in adjacency[node]))
  for a, b in edges:
    count = math.ceil(np.linalg.norm(nodes[b] - nodes[a]) / spec.pano_spacing_m)
    along = _planar_bearing(nodes[a], nodes[b])
    edge_panos[(a, b)] = list(range(len(positions), len(positions) + count - 1))
    edge_panos[(b, a)] = edge_panos[(a, b)][::-1]
    for i in range(1, count):
      positions.append(nodes[a] + (nodes[b] - nodes[a]) * i / count)
      corridors.append((along, (along + 180.0) % 360.0))
  positions = np.asarray(positions)
  lat, lng = geo.local_to_latlng(spec.origin, positions[:, 0], positions[:, 1])
  rotations = np.round(rng.uniform(0, 360, size=len(positions)), 2)
  panos = tuple(
      Pano(_pano_id(spec, i), (float(p[0]), float(p[1])), (float(la), float(ln)), float(r), c)
      for i, (p, la, ln, r, c) in enumerate(zip(positions, lat, lng, rotations, corridors)))
  return panos, node_pano, edge_panos


def _shortest_paths(latlng: np.ndarray, adjacency) -> tuple[np.ndarray, np.ndarray]:
  """All-pairs street distances (haversine metres) and predecessors, by Dijkstra."""
  n = len(latlng)
  dist = np.full((n, n), np.inf)
  pred = np.full((n, n), -1, dtype=np.int64)
  for source in range(n):
    dist[source, source] = 0.0
    heap = [(0.0, source)]
    while heap:
      d, u = heapq.heappop(heap)
      if d > dist[source, u]:
        continue
      for v in adjacency[u]:
        nd = d + geo.haversine(latlng[u], latlng[v])
        if nd < dist[source, v]:
          dist[source, v], pred[source, v] = nd, u
          heapq.heappush(heap, (nd, v))
  return dist, pred


def _path(pred: np.ndarray, source: int, target: int) -> list[int]:
  path = [target]
  while path[-1] != source:
    path.append(int(pred[source, path[-1]]))
  return path[::-1]


MILESTONE = ('\n{{\n"intersection_idx": "{idx}",\n"landmarks": "{landmarks}",\n'
             '"distance": "{distance} meters",\n"human_heading": "{human_heading}",\n'
             '"to_next_intersection_heading": "{heading} ({direction})",\n}}\n')


def _route(spec, city_latlng, landmarks_at, panos, start: int, path: list[int], rng, number):
  """One `route_infos.json` entry: from panorama `start` through the intersections `path`."""
  points = [panos[start].latlng] + [tuple(map(float, city_latlng[p])) for p in path]
  blocks, landmark_list = [], []
  for k, node in enumerate(path):
    heading = geo.bearing(points[k], points[k + 1])
    landmark = landmarks_at.get(node)
    if landmark is None:
      text = routes.NO_LANDMARK
    else:
      text = f"{landmark.name} is on your {geo.relation(heading, geo.bearing(points[k + 1], landmark.latlng))}"
    landmark_list.append(None if landmark is None else
                         {"name": landmark.name, "geocode": list(landmark.latlng)})
    blocks.append(MILESTONE.format(
        idx=k + 1, landmarks=text, distance=int(round(geo.haversine(points[k], points[k + 1]))),
        human_heading=int(heading), heading=int(heading), direction=geo.compass(int(heading))))
  destination = landmarks_at[path[-1]]
  return {
      "route_id": f"{spec.name}-{number}",
      "start_place": {"name": f"{spec.name} start {number}", "geocode": list(points[0]),
                      "relocated_geocode": list(points[0])},
      "dest_place": {"name": destination.name, "geocode": list(destination.latlng),
                     "relocated_geocode": list(points[-1])},
      "init_heading": int(rng.integers(1, 360)) if rng.random() < 0.5 else 0,
      "route_results": {"geocode_list": [list(p) for p in points[1:]],
                        "landmark_list": landmark_list},
      "milestone_info": "".join(blocks),
  }


def build_city(spec: CitySpec) -> City:
  """The city of `spec`, in memory (deterministic per spec)."""
  rng = np.random.default_rng([spec.seed, zlib.crc32(spec.name.encode())])
  nodes, edges = _streets(spec, rng)
  lat, lng = geo.local_to_latlng(spec.origin, nodes[:, 0], nodes[:, 1])
  node_latlng = np.stack([lat, lng], axis=1)
  adjacency = _neighbours(len(nodes), edges)
  landmarks = _landmarks(spec, nodes, adjacency, rng)
  panos, node_pano, edge_panos = _panos(spec, nodes, edges, adjacency, rng)
  dist, pred = _shortest_paths(node_latlng, adjacency)
  landmarks_at = {lm.node: lm for lm in landmarks}

  found, seen, used = [], set(), set()
  for _ in range(100 * spec.num_routes):
    if len(found) == spec.num_routes:
      break
    a, b = edges[int(rng.integers(len(edges)))]
    inner = edge_panos[(a, b)]
    middle = inner[len(inner) // 4: len(inner) - len(inner) // 4]
    destination = landmarks[int(rng.integers(len(landmarks)))].node
    if not middle or destination in (a, b):
      continue
    start = middle[int(rng.integers(len(middle)))]
    via = min((a, b), key=lambda end: geo.haversine(panos[start].latlng, node_latlng[end])
              + dist[end, destination])
    if (start, destination) in seen:
      continue
    seen.add((start, destination))
    path = _path(pred, via, destination)
    used.update([(a, b)] + list(zip(path, path[1:])))
    found.append(_route(spec, node_latlng, landmarks_at, panos, start, path, rng, len(found)))
  if len(found) < spec.num_routes:
    raise ValueError(f"{spec}: only {len(found)} distinct routes exist")
  heldout = tuple(sorted(int(i) for i in rng.permutation(len(found))[
      :round(spec.heldout_fraction * len(found))]))
  written = range(len(panos))
  if spec.route_streets_only:
    written = sorted({node_pano[n] for edge in used for n in edge}
                     | {i for edge in used for i in edge_panos[edge]})
  return City(spec, nodes, node_latlng, edges, landmarks, panos, node_pano, edge_panos,
              tuple(found), heldout, tuple(written))


def _signs(city: City, pano: Pano) -> list[synth_render.Sign]:
  signs = []
  for landmark in city.landmarks:
    distance = geo.haversine(pano.latlng, landmark.latlng)
    if distance <= VISIBLE_M:
      signs.append(synth_render.Sign(geo.bearing(pano.latlng, landmark.latlng), distance,
                                     landmark.name, landmark.color))
  return signs


def write(directory: str, cities, with_splits: bool):
  """Writes `cities` into `directory` in the published layout (one data set)."""
  views = os.path.join(directory, routes.STREET_VIEWS)
  os.makedirs(views, exist_ok=True)
  all_routes, entries, train, heldout = [], [], [], []
  for city in cities:
    style = synth_render.STYLES[city.spec.style]
    for pano in (city.panos[i] for i in city.written):
      pixels = synth_render.paint(city.spec.pano_width, style, pano.position, pano.rotation,
                                  pano.corridors, _signs(city, pano))
      image_path, metadata_path = routes.pano_paths(directory, pano.pano_id)
      Image.fromarray(pixels).save(image_path, quality=90)
      with open(metadata_path, "w", encoding="utf-8") as f:
        json.dump({"pano_id": pano.pano_id, "lat": pano.latlng[0], "lng": pano.latlng[1],
                   "rotation": pano.rotation, "synthetic_style": city.spec.style}, f)
      entries.append((pano.latlng[0], pano.latlng[1], pano.pano_id))
    offset = len(all_routes)
    all_routes.extend(city.routes)
    held = set(city.heldout)
    train += [offset + i for i in range(len(city.routes)) if i not in held]
    heldout += [offset + i for i in sorted(held)]
  with open(os.path.join(directory, routes.ROUTES_NAME), "w", encoding="utf-8") as f:
    json.dump([all_routes, len(all_routes)], f, indent=1)
  mapping.write_json(os.path.join(directory, mapping.JSON_NAME), entries)
  if with_splits:
    with open(os.path.join(directory, routes.SPLITS_NAME), "w", encoding="utf-8") as f:
      json.dump({"train": train, "heldout": heldout}, f)


# Where the 9 visual-OOD cities lie: the VLN_mini cities (Milan, New Delhi, Buenos Aires,
# London, Hong Kong, New York, Melbourne, Lagos, San Francisco).
_MINI_ORIGINS = ((45.4642, 9.1900), (28.6139, 77.2090), (-34.6037, -58.3816),
                 (51.5072, -0.1276), (22.2800, 114.1600), (40.7075, -74.0113),
                 (-37.8136, 144.9631), (6.4550, 3.3941), (37.7749, -122.4194))


def specs(kind: str, seed: int) -> list[CitySpec]:
  """The cities of a synthetic data set."""
  if kind == "city":
    return [CitySpec(seed=seed)]
  if kind == "mini":
    return [CitySpec(seed=seed, style=style, name=f"mini-{style}", origin=origin, grid=4,
                     pano_spacing_m=15.0, num_routes=2, heldout_fraction=0.0,
                     route_streets_only=True)
            for style, origin in zip(MINI_STYLES, _MINI_ORIGINS)]
  raise ValueError(f"synthetic={kind!r}: must be one of {KINDS}")


def default_cache_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "jaxrl_gen", "virl")


@functools.lru_cache(maxsize=16)
def ensure(kind: str, seed: int, cache_dir: str = "") -> str:
  """The directory of synthetic data set `kind`, generated under `cache_dir` (default
  `default_cache_dir()`) if it is not there yet. Safe when processes race: each writes to a
  temporary directory and renames it into place."""
  city_specs = specs(kind, seed)
  root = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
  key = hashlib.sha256(json.dumps(
      [VERSION, kind, [dataclasses.asdict(s) for s in city_specs]]).encode()).hexdigest()[:12]
  target = os.path.join(root, f"{kind}-{seed}-{key}")
  if os.path.isfile(os.path.join(target, routes.ROUTES_NAME)):
    return target
  os.makedirs(root, exist_ok=True)
  # Generation takes long enough (and writes enough) that a silent wait looks like a hang.
  print(f"building the synthetic V-IRL data set {kind!r} into {target} (first use:"
        " about 20 s and 20 MB)", file=sys.stderr, flush=True)
  scratch = tempfile.mkdtemp(prefix=".generating-", dir=root)
  try:
    write(scratch, [build_city(s) for s in city_specs], with_splits=kind == "city")
    try:
      os.rename(scratch, target)
    except OSError:
      if not os.path.isfile(os.path.join(target, routes.ROUTES_NAME)):
        raise  # not a lost race: a real failure
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return target
