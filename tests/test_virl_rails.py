"""V-IRL geometry, milestone parsing, instructions and rails (`reference.md` §3.1-3.4), checked
against hand-built routes and, on a synthetic city, an independent shortest-path / heading
computation."""

import math
import re

import numpy as np
import pytest
from scipy.sparse import csgraph, csr_matrix

from jaxrl_gen.envs import virl
from jaxrl_gen.envs.virl import geo, mapping, rails, routes, synth

COMPASS = ["north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest"]
RELATIONS = ["front", "right front", "right", "right behind", "behind", "left behind", "left",
             "left front"]


# Independent re-derivations (not the library's code paths).
def _haversine(a, b):
  p1, p2 = math.radians(a[0]), math.radians(b[0])
  dp, dl = p2 - p1, math.radians(b[1] - a[1])
  h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
  return 2 * 6371000.0 * math.asin(math.sqrt(h))


def _bearing(a, b):
  # Compass bearing through the local east/north tangent vector (3-D, not the atan2 formula).
  def xyz(p):
    la, lo = map(math.radians, p)
    return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])
  pa, pb = xyz(a), xyz(b)
  la, lo = map(math.radians, a)
  east = np.array([-math.sin(lo), math.cos(lo), 0.0])
  north = np.array([-math.sin(la) * math.cos(lo), -math.sin(la) * math.sin(lo), math.cos(la)])
  d = pb - pa
  return math.degrees(math.atan2(d @ east, d @ north)) % 360


def _sector(angle):
  """Index of the nearest 45-degree sector and the distance to the closest boundary."""
  a = angle % 360
  m = (a - 22.5) % 45
  return int(((a + 22.5) // 45) % 8), min(m, 45 - m)


def _reference_turn(previous, new):
  d = new - previous
  if d < -45:
    return "left"
  if d > 45:
    return "right"
  if -45 <= d <= 0:
    return "slightly left"
  return "slightly right"


def _wrapped_turn(previous, new):
  d = round(math.degrees(math.atan2(math.sin(math.radians(new - previous)),
                                    math.cos(math.radians(new - previous)))), 6)
  return _reference_turn(0, 180.0 if d == -180.0 else d)  # the range is (-180, 180]


def test_distances_bearings_and_direction_words():
  assert geo.haversine((0.0, 0.0), (1.0, 0.0)) == pytest.approx(2 * math.pi * 6371000 / 360)
  assert geo.haversine((40.0, -74.0), np.array([[40.0, -74.0], [40.001, -74.0]])) == \
      pytest.approx([0.0, 111.19], abs=0.01)
  for target, expected in (((1, 0), 0), ((0, 1), 90), ((-1, 0), 180), ((0, -1), 270)):
    assert geo.bearing((0, 0), target) == pytest.approx(expected)
  assert [geo.compass(h) for h in (0, 22, 23, 177, 200, 337, 338, 359)] == [
      "north", "north", "northeast", "south", "south", "northwest", "north", "north"]
  assert geo.relation(90, 180) == "right"
  assert geo.relation(350, 10) == "front"
  assert geo.relation(10, 190) == "behind"
  assert geo.relation(0, 300) == "left front"


def test_turn_labels_wrap_by_default_and_legacy_reproduces_the_reference():
  for previous in range(0, 360, 7):
    for new in range(0, 360, 5):
      assert geo.turn(previous, new, wrap=False) == _reference_turn(previous, new)
      assert geo.turn(previous, new) == _wrapped_turn(previous, new), (previous, new)
  assert geo.turn(350, 10) == "slightly right" and geo.turn(350, 10, wrap=False) == "left"
  assert geo.turn(10, 350) == "slightly left" and geo.turn(10, 350, wrap=False) == "right"
  assert geo.turn(300, 90) == "right" and geo.turn(300, 90, wrap=False) == "left"


MILESTONES = '''
{
"intersection_idx": "1",
"landmarks": "No landmark nearby",
"distance": "100 meters",
"human_heading": "90",
"to_next_intersection_heading": "90 (east)",
}

{
  "intersection_idx": "2",
  "distance": "100 meters" ,
  "human_heading": "0",
  "to_next_intersection_heading": "0 (north)",
  "landmarks": "Cafe: Uno is on your right",
}
'''


def test_milestone_blocks_are_read_like_the_reference():
  blocks = routes.parse_milestone_blocks(MILESTONES)
  assert blocks[0]["to_next_intersection_heading"] == "90 (east)"
  assert blocks[1]["landmarks"] == "Cafe: Uno is on your right"  # split on the first ':'
  assert blocks[1]["distance"] == "100 meters"
  info = _route_info(MILESTONES.replace('"landmarks": "No landmark nearby",\n', ""))
  route = routes.parse_route(info, "r")
  assert route.milestones[0] == routes.Milestone(90, "east", "No landmark nearby")
  assert route.milestones[1] == routes.Milestone(0, "north", "Cafe: Uno is on your right")
  assert route.init_heading == 0  # absent: drawn at reset


@pytest.mark.parametrize("mutate, message", [
    (lambda i: i.pop("milestone_info"), "missing or malformed field"),
    (lambda i: i["route_results"]["geocode_list"].pop(), "2 milestone blocks for 1 geocodes"),
    (lambda i: i.update(milestone_info=MILESTONES.replace("90 (east)", "ninety (east)")),
     "is not '<degrees> (<compass>)'"),
    (lambda i: i.update(milestone_info=MILESTONES.replace("(east)", "(up)")), "compass direction"),
    (lambda i: i["start_place"].update(relocated_geocode=[1.0]), "start_place: expected [lat, lng]"),
])
def test_malformed_routes_are_clear_errors(mutate, message):
  info = _route_info(MILESTONES)
  mutate(info)
  with pytest.raises(ValueError, match="route 7.*" + re.escape(message)):
    routes.parse_route(info, "route 7")


# A hand-built street corner: 200 m east along a street, then 100 m north; panoramas every 5 m.
ORIGIN = (40.0, -74.0)


def _point(east, north):
  lat, lng = geo.local_to_latlng(ORIGIN, east, north)
  return (float(lat), float(lng))


def _route_info(milestone_info, start=(0, 0), geocodes=((100, 0), (100, 100))):
  return {"start_place": {"relocated_geocode": list(_point(*start))},
          "route_results": {"geocode_list": [list(_point(*g)) for g in geocodes]},
          "dest_place": {"name": "Cafe Uno"}, "milestone_info": milestone_info}


@pytest.fixture(scope="module")
def corner_index():
  points = [(e, 0) for e in range(0, 101, 5)] + [(100, n) for n in range(5, 101, 5)]
  return mapping.PanoIndex([(*_point(*p), f"p{e}_{n}") for p, (e, n) in zip(points, points)])


def _build(route, index, heading=300, **kw):
  args = dict(absolute=True, straight_line_length=5, drop_rate=0.0, snap_radius=20.0,
              wrap_turns=True)
  args.update(kw)
  return rails.build(route, heading, index, np.random.default_rng(0), **args)


def test_instructions_and_rail_of_a_hand_built_route(corner_index):
  route = routes.parse_route(_route_info(MILESTONES), "r")
  plan = _build(route, corner_index)
  assert plan.instructions == (
      "First, turn right to face east.",
      "Move forward until you reach next intersection.",
      "Turn left to face north.",
      "Move forward until you reach destination where Cafe: Uno is on your right.")
  assert plan.instruction_text == "".join(
      f"{i}. {s}\n" for i, s in enumerate(plan.instructions, 1))
  # Forward points at 1/5..4/5 of each 100 m leg (the 5/5 one is the turning point, < 8 m).
  summary = [(p.action, p.pano_id, p.heading, p.observation, p.instruction) for p in plan.rail]
  assert summary == (
      [("turn_direction(east)", "p0_0", 300, "No landmarks nearby; ", 0)]
      + [("forward()", f"p{e}_0", 90, "No landmarks nearby; ", 1) for e in (20, 40, 60, 80)]
      + [("turn_direction(north)", "p100_0", 90,
          "No landmark nearby; You observe an intersection", 2)]
      + [("forward()", f"p100_{n}", 0, "No landmarks nearby; ", 3) for n in (20, 40, 60, 80)]
      + [("stop()", "p100_100", 0, "Cafe: Uno is on your right; ", 3)])
  relative = _build(route, corner_index, absolute=False)
  assert [p.action for p in relative.rail if p.action != "forward()"] == [
      "turn_direction(right)", "turn_direction(left)", "stop()"]
  legacy = _build(route, corner_index, wrap_turns=False)  # 300 -> 90 unwrapped is -210
  assert legacy.instructions[0] == "First, turn left to face east."


def test_rail_drop_out_snapping_and_short_legs(corner_index):
  route = routes.parse_route(_route_info(MILESTONES), "r")
  assert [p.action for p in _build(route, corner_index, drop_rate=1.0).rail] == [
      "turn_direction(east)", "turn_direction(north)", "stop()"]
  plans = [rails.build(route, 300, corner_index, np.random.default_rng(s), absolute=True,
                       straight_line_length=5, drop_rate=0.5, snap_radius=20.0, wrap_turns=True)
           for s in range(20)]
  counts = {len(p.rail) for p in plans}
  assert len(counts) > 2 and min(counts) >= 3 and max(counts) <= 11
  # Positions off the street by more than the radius do not snap: the keypoint keeps its raw
  # position and has no panorama; forward points there are skipped.
  far = routes.parse_route(_route_info(MILESTONES, geocodes=((100, 0), (100, 400))), "r")
  plan = _build(far, corner_index)
  assert plan.rail[-1].pano_id is None and plan.rail[-1].geocode == pytest.approx(_point(100, 400))
  assert [p.pano_id for p in plan.rail if p.heading == 0] == ["p100_80", None]
  assert all(p.pano_id is not None for p in plan.rail[:-1])
  # A leg of at most 5 m gets no forward points.
  short = routes.parse_route(_route_info(MILESTONES, geocodes=((4, 0), (4, 100))), "r")
  assert [p.action for p in _build(short, corner_index).rail][:2] == [
      "turn_direction(east)", "turn_direction(north)"]


def test_a_short_leg_holds_the_instruction_back_as_the_reference_does(corner_index):
  # The reference advances its sentence counter after each leg longer than 5 m and after each
  # turning point; the 2 m first leg (the start snaps to the corner) skips one advance, so
  # every later point names the sentence before the one a per-sentence count would give.
  short = routes.parse_route(_route_info(MILESTONES, start=(98, 0)), "r")
  plan = _build(short, corner_index)
  assert [(p.action, plan.instructions[p.instruction]) for p in plan.rail] == (
      [("turn_direction(east)", "First, turn right to face east."),
       ("turn_direction(north)", "Move forward until you reach next intersection.")]
      + [("forward()", "Turn left to face north.")] * 4
      + [("stop()", "Turn left to face north.")])
  # The SFT target and the step info carry that sentence.
  state = virl.State("", 0, plan, position=1)
  assert '"current instruction": "Move forward until you reach next intersection.",' in \
      virl.expert_answer(state, virl.EnvParams())
  assert virl.info(state, virl.EnvParams())["instruction_idx"] == 2
  # A short last leg: the destination names the last turn.
  last = routes.parse_route(_route_info(MILESTONES, geocodes=((100, 0), (100, 4))), "r")
  assert _build(last, corner_index).rail[-1].instruction == 2


def test_long_legs_cap_runs_of_forward_points(corner_index):
  # straight_line_length caps the forward points of a leg, however long it is.
  route = routes.parse_route(_route_info(MILESTONES), "r")
  plan = _build(route, corner_index, straight_line_length=2)
  assert [p.action for p in plan.rail].count("forward()") == 2  # at 50 m on each leg


SMALL = synth.CitySpec(seed=3, grid=4, pano_width=64, num_routes=16)


def test_synthetic_routes_match_independent_shortest_paths_and_headings():
  city = synth.build_city(SMALL)
  n = len(city.nodes)
  latlng = [tuple(p) for p in city.node_latlng]
  weights = np.zeros((n, n))
  for a, b in city.edges:
    weights[a, b] = weights[b, a] = _haversine(latlng[a], latlng[b])
  dist, pred = csgraph.dijkstra(csr_matrix(weights), directed=False, return_predecessors=True)
  node_of = {p: i for i, p in enumerate(latlng)}
  pano_edge = {pano: (a, b) for (a, b), panos in city.edge_panos.items() for pano in panos}
  pano_at = {p.latlng: i for i, p in enumerate(city.panos)}
  index = mapping.PanoIndex([(*p.latlng, p.pano_id) for p in city.panos])
  landmarks = {lm.name: lm for lm in city.landmarks}

  for info in city.routes:
    route = routes.parse_route(info, "synthetic")
    a, b = pano_edge[pano_at[route.start]]
    destination = node_of[route.geocodes[-1]]
    first = min((a, b), key=lambda e: _haversine(route.start, latlng[e]) + dist[e, destination])
    path = [destination]
    while path[-1] != first:
      path.append(pred[first, path[-1]])
    assert [node_of[g] for g in route.geocodes] == path[::-1]
    assert landmarks[route.destination].node == destination

    points = (route.start,) + route.geocodes
    turns = []
    previous = 123
    for k, milestone in enumerate(route.milestones):
      heading = _bearing(points[k], points[k + 1])
      assert abs(((milestone.heading - heading + 180) % 360) - 180) < 1.0
      sector, margin = _sector(milestone.heading)
      assert milestone.direction == COMPASS[sector]
      if milestone.landmark != "No landmark nearby":
        name, _, relation = milestone.landmark.partition(" is on your ")
        sector, margin = _sector(_bearing(points[k + 1], landmarks[name].latlng) - heading)
        assert landmarks[name].node == node_of[points[k + 1]]
        assert margin < 0.5 or relation == RELATIONS[sector]
      turns.append(_wrapped_turn(previous, milestone.heading))
      previous = milestone.heading

    for absolute, words in ((True, [m.direction for m in route.milestones]), (False, turns)):
      plan = rails.build(route, 123, index, np.random.default_rng(0), absolute=absolute,
                         straight_line_length=5, drop_rate=0.0, snap_radius=20.0,
                         wrap_turns=True)
      keypoints = [p for p in plan.rail if p.action != "forward()"]
      assert [p.action for p in keypoints] == [f"turn_direction({w})" for w in words] + ["stop()"]
      assert [p.geocode for p in keypoints] == list(points)  # every turning point has a pano
      leg = 0
      for p in plan.rail:
        if p.action == "forward()":
          # Between the leg's ends, on the street, facing along it.
          start, end = points[leg], points[leg + 1]
          assert _haversine(start, p.geocode) + _haversine(p.geocode, end) < \
              _haversine(start, end) + 1.0
          assert p.heading == route.milestones[leg].heading
          assert p.instruction == 2 * leg + 1
        else:
          leg = keypoints.index(p)
