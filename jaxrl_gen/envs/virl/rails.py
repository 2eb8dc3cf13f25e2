"""Instructions and the ground-truth "rail" of a route (`reference.md` §3.3-3.4).

The rail is the sequence of positions the agent visits: the snapped start, then for each leg
up to `straight_line_length` interpolated forward points (each dropped with `drop_rate`) and
the snapped turning point. Every rail point carries the expert action, the oracle
observation and the instruction sentence being executed there.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxrl_gen.envs.virl import geo
from jaxrl_gen.envs.virl.mapping import PanoIndex
from jaxrl_gen.envs.virl.routes import Route

NO_LANDMARKS = "No landmarks nearby"  # the rail's own default (plural, as the reference)
INTERSECTION = "You observe an intersection"
FORWARD, STOP = "forward()", "stop()"
MIN_LEG_M = 5.0  # legs at most this long get no forward points
MIN_GAP_M = 8.0  # a forward point must be farther than this from both ends of its leg


@dataclasses.dataclass(frozen=True)
class RailPoint:
  geocode: tuple[float, float]
  pano_id: str | None  # None where snapping failed (no image there)
  heading: int  # the walker's heading here: the initial one at the start, else the leg's
  action: str  # the expert action in the configured action space
  landmark: str
  intersection: str  # INTERSECTION at turning points, '' at the start and the destination
  instruction: int  # index of the sentence being executed

  @property
  def observation(self) -> str:
    """The oracle text observation, e.g. 'The Dutch is on your right; You observe an intersection'."""
    return f"{self.landmark}; {self.intersection}"


@dataclasses.dataclass(frozen=True)
class Plan:
  instructions: tuple[str, ...]
  rail: tuple[RailPoint, ...]

  @property
  def instruction_text(self) -> str:
    """The numbered instruction block of the prompt: '1. ...\\n2. ...\\n'."""
    return "".join(f"{i + 1}. {sentence}\n" for i, sentence in enumerate(self.instructions))


def instructions(route: Route, init_heading: int, wrap_turns: bool) -> tuple[list[str], list[str]]:
  """The 2K instruction sentences and the K relative turn labels of a route."""
  sentences, turns = [], []
  previous = init_heading
  last = len(route.milestones) - 1
  for k, milestone in enumerate(route.milestones):
    rel = geo.turn(previous, milestone.heading, wrap=wrap_turns)
    turns.append(rel)
    previous = milestone.heading
    verb = "First, turn" if k == 0 and k != last else "Turn"
    sentences.append(f"{verb} {rel} to face {milestone.direction}.")
    if k == last:
      sentences.append(f"Move forward until you reach destination where {milestone.landmark}.")
    elif milestone.landmark == "No landmark nearby":
      sentences.append("Move forward until you reach next intersection.")
    else:
      sentences.append(f"Move forward until you reach next intersection where {milestone.landmark}.")
  return sentences, turns


def build(route: Route, init_heading: int, index: PanoIndex, rng: np.random.Generator, *,
          absolute: bool, straight_line_length: int, drop_rate: float, snap_radius: float,
          wrap_turns: bool) -> Plan:
  """The instructions and rail of `route` for a walker starting at `init_heading`.

  Randomness (the forward-point drop-out) comes from `rng`, one draw per candidate point in
  route order. Instruction indices count as the reference's do: a leg longer than 5 m gives
  its forward points the current sentence and advances by one, every turning point takes the
  current sentence and advances by one, and the destination takes the sentence before the
  current one. With long legs that is turn k at turning point k, move k on leg k and the
  last "Move forward" sentence at the destination; a leg of at most 5 m skips an advance, so
  every later point names the sentence before (the turning point after it, the previous
  "Move forward" sentence). Distances are haversine; the reference measured the 5 m and 8 m
  thresholds with geopy's ellipsoidal geodesic, which differs by well under 1%.
  """
  sentences, turns = instructions(route, init_heading, wrap_turns)
  milestones = route.milestones
  num_legs = len(milestones)
  headings = [init_heading] + [m.heading for m in milestones]
  landmarks = [NO_LANDMARKS] + [m.landmark for m in milestones]

  def snap(geocode):
    hit = index.snap(geocode, snap_radius)
    return hit if hit is not None else (tuple(geocode), None)

  rail = []
  sentence = 0  # the reference's running instruction index
  previous, previous_pano = snap(route.start)
  for idx, raw in enumerate((route.start,) + route.geocodes):
    leg_length = geo.haversine(previous, raw)  # raw target, as the reference measures it
    point, pano = (previous, previous_pano) if idx == 0 else snap(raw)
    if idx > 0 and leg_length > MIN_LEG_M:
      for i in range(1, straight_line_length + 1):
        if rng.random() < drop_rate:
          continue
        hit = index.snap(geo.interpolate(previous, point, i, straight_line_length), snap_radius)
        if hit is None:
          continue
        where, where_pano = hit
        if geo.haversine(previous, where) > MIN_GAP_M and geo.haversine(point, where) > MIN_GAP_M:
          rail.append(RailPoint(where, where_pano, headings[idx], FORWARD, NO_LANDMARKS, "",
                                sentence))
      sentence += 1
    if idx == num_legs:  # one sentence back: after a long last leg, its "Move forward"
      action, intersection, sentence = STOP, "", sentence - 1
    else:
      turn_to = milestones[idx].direction if absolute else turns[idx]
      action = f"turn_direction({turn_to})"
      intersection = INTERSECTION if idx > 0 else ""
    rail.append(RailPoint(point, pano, headings[idx], action, landmarks[idx], intersection,
                          sentence))
    sentence += 1
    previous, previous_pano = point, pano
  return Plan(tuple(sentences), tuple(rail))
