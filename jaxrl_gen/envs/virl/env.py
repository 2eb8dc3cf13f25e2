"""The V-IRL navigation environment as pure functions (`reference.md` §3, `core.Env`).

    state, obs = reset(key, params, route_index=None)
    state, obs, reward, terminated, truncated, info = step(state, answer_text, params)

An episode walks one route's rail. At each rail point the model has `verify_iter` graded
attempts; a correct action moves on (a fresh single-turn prompt), a wrong one gets the
verifier's feedback appended (sequential revision). After the budget, one more generation is
graded -1 and the episode is truncated (`forced_fail_step`), terminated too at the
destination; a correct `stop()` terminates it. Route data are loaded once per directory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import numpy as np
from PIL import Image

from jaxrl_gen.envs import core, fields
from jaxrl_gen.envs.virl import projection, prompts, rails, routes, synth, verifier, views

ACTION_SPACES = ("absolute", "relative")
REFERENCE_VIEW_HEADINGS = (-135, -45, 45, 135)  # the reference code's grid (decisions row 11)


@dataclasses.dataclass(frozen=True)
class EnvParams:
  """One V-IRL variant. Field names are the keys of `config.env` in `configs/virl.py`, where
  each is documented."""

  data_dir: str = ""
  synthetic: str = "city"
  synthetic_seed: int = 0
  cache_dir: str = ""
  route_split: str = "train"
  action_space: str = "absolute"
  verify_iter: int = 2
  forced_fail_step: bool = True
  straight_line_length: int = 5
  drop_rate: float = 0.5
  snap_radius: float = 20.0
  wrap_turns: bool = True
  legacy_intersection_check: bool = False
  language_only: bool = True
  view_headings: tuple = (0, 90, 180, 270)
  fov: float = 90.0
  view_size: int = 640
  resolution: int = 1200
  interpolation: str = "cubic"

  def __post_init__(self):
    object.__setattr__(self, "view_headings", tuple(self.view_headings))
    _check_type(self, "data_dir", str)
    _check_type(self, "cache_dir", str)
    _check_choice(self, "synthetic", synth.KINDS)
    _check_choice(self, "route_split", routes.SPLITS)
    _check_choice(self, "action_space", ACTION_SPACES)
    _check_choice(self, "interpolation", projection.INTERPOLATIONS)
    for name in ("forced_fail_step", "wrap_turns", "legacy_intersection_check", "language_only"):
      _check_type(self, name, bool)
    _check_int(self, "synthetic_seed", 0)
    _check_int(self, "verify_iter", 1)
    _check_int(self, "straight_line_length", 1)
    _check_int(self, "view_size", 1)
    _check_int(self, "resolution", 1)
    _check_number(self, "drop_rate", 0.0, 1.0)
    _check_number(self, "snap_radius", 0.0, math.inf, open_low=True)
    _check_number(self, "fov", 0.0, 180.0, open_low=True, open_high=True)
    if len(self.view_headings) != 4 or not all(
        isinstance(h, (int, float)) and not isinstance(h, bool) and math.isfinite(h)
        for h in self.view_headings):
      raise ValueError(f"view_headings={self.view_headings!r}: must be 4 heading offsets in"
                       " degrees (row-major 2x2 grid)")

  @property
  def absolute(self) -> bool:
    return self.action_space == "absolute"


def _check_type(params, name, kind):
  value = getattr(params, name)
  if not isinstance(value, kind):
    raise ValueError(f"{name}={value!r}: must be a {kind.__name__}")


def _check_choice(params, name, allowed):
  value = getattr(params, name)
  if value not in allowed:
    raise ValueError(f"{name}={value!r}: must be one of {tuple(allowed)}")


def _check_int(params, name, low):
  value = getattr(params, name)
  if not isinstance(value, int) or isinstance(value, bool) or value < low:
    raise ValueError(f"{name}={value!r}: must be an integer >= {low}")


def _check_number(params, name, low, high, open_low=False, open_high=False):
  value = getattr(params, name)
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  ok = ok and (value > low if open_low else value >= low)
  ok = ok and (value < high if open_high else value <= high)
  if not ok:
    raise ValueError(f"{name}={value!r}: must be a number in {'(' if open_low else '['}{low},"
                     f" {high}{')' if open_high else ']'}")


@dataclasses.dataclass(frozen=True)
class State:
  """One episode: a route's plan and how far along it the walker is."""

  data_dir: str  # the route data directory (for the panoramas)
  route_index: int  # into the directory's route list
  plan: rails.Plan
  position: int = 0  # index of the current rail point
  attempts: int = 0  # answers given at the current rail point
  history: tuple[tuple[str, str], ...] = ()  # (oracle observation, action) of passed points
  conversation: core.Conversation = ()
  is_success: bool = True
  done: bool = False

  @property
  def point(self) -> rails.RailPoint:
    """The current rail point: the ground truth the next answer is graded against."""
    return self.plan.rail[self.position]


def data_dir(params: EnvParams) -> str:
  """The route data directory of `params`: `data_dir`, or the synthetic data set (generated
  into the cache on first use)."""
  if params.data_dir:
    return os.path.abspath(os.path.expanduser(params.data_dir))
  return synth.ensure(params.synthetic, params.synthetic_seed, params.cache_dir)


def check_files(params: EnvParams) -> None:
  """A one-line ValueError unless `params.data_dir` is empty (synthetic data) or holds the
  published layout (the street views only for V-IRL-VL)."""
  if params.data_dir:
    routes.check_layout(data_dir(params), images=not params.language_only)


@functools.lru_cache(maxsize=16)
def load(params: EnvParams) -> routes.City:
  """The route data of `params`, loaded once per process."""
  return routes.load_city(data_dir(params))


def reset(key: Any, params: EnvParams, route_index: int | None = None):
  """A new episode: a route drawn from `params.route_split` (or its `route_index`-th route,
  for ordered evaluation), a random initial heading where the route has none, and the
  rail's drop-out, all from `key`."""
  city = load(params)
  split = city.split(params.route_split)
  rng = core.rng(key)
  if route_index is None:
    index = split[int(rng.integers(len(split)))]
  elif isinstance(route_index, (int, np.integer)) and 0 <= route_index < len(split):
    index = split[int(route_index)]
  else:
    raise ValueError(f"route_index={route_index!r}: the {params.route_split!r} split has"
                     f" {len(split)} routes")
  route = city.routes[index]
  heading = route.init_heading or int(rng.integers(0, 360))
  plan = rails.build(route, heading, city.index, rng, absolute=params.absolute,
                     straight_line_length=params.straight_line_length,
                     drop_rate=params.drop_rate, snap_radius=params.snap_radius,
                     wrap_turns=params.wrap_turns)
  state = State(city.root, index, plan)
  state = dataclasses.replace(state, conversation=_fresh_conversation(state, params))
  return state, state.conversation


def step(state: State, answer_text: str, params: EnvParams):
  """Grades one answer at the current rail point; returns
  (state, obs, reward, terminated, truncated, info)."""
  if state.done:
    raise ValueError("step() on a finished episode; call reset()")
  answer = answer_text if isinstance(answer_text, str) else fields.clip(answer_text)
  point = state.point
  at_stop = point.action == rails.STOP
  attempts = state.attempts + 1
  if attempts > params.verify_iter:  # only reachable with forced_fail_step
    state = dataclasses.replace(state, attempts=attempts, is_success=False, done=True)
    return (state, state.conversation, verifier.OVER_BUDGET, at_stop, True,
            info(state, params, verifier.OVER_BUDGET_INFO))

  reward, message = verifier.verify(answer, point, params)
  terminated = truncated = False
  if reward == verifier.CORRECT_ACTION:
    if at_stop:
      state = dataclasses.replace(state, attempts=attempts, done=True)
      terminated = True
    else:
      state = dataclasses.replace(state, position=state.position + 1, attempts=0,
                                  history=state.history + ((point.observation, point.action),))
      state = dataclasses.replace(state, conversation=_fresh_conversation(state, params))
  elif attempts == params.verify_iter and not params.forced_fail_step:
    state = dataclasses.replace(state, attempts=attempts, is_success=False, done=True)
    terminated, truncated = at_stop, True
  else:
    state = dataclasses.replace(state, attempts=attempts,
                                conversation=core.revise(state.conversation, answer, message))
  return state, state.conversation, reward, terminated, truncated, info(state, params, message)


def info(state: State, params: EnvParams, verify_info: str | None = None) -> dict:
  """The reference's step info (`global_instruction`, `gt_action`, `obs_act_seq`, ...).

  `instruction_idx` counts the current sentence from 1, except right after reset, where it
  is 0: the reference's reset reports its own counter, which starts at 0, and every step
  reports the rail point's index.
  """
  point = state.point
  fresh = state.position == 0 and state.attempts == 0
  return {
      "global_instruction": state.plan.instruction_text,
      "current_instruction": state.plan.instructions[point.instruction],
      "instruction_idx": 0 if fresh else point.instruction + 1,
      "gt_action": point.action,
      "current_obs": point.observation,
      "obs_act_seq": _history(state, params),
      "Verify Info": verify_info,
      "is_success": state.is_success,
      "route_index": state.route_index,
  }


def _history(state: State, params: EnvParams) -> str:
  return prompts.history(state.history, state.point.observation, vision=not params.language_only)


def prompt(state: State, params: EnvParams) -> str:
  """The prompt text at the current rail point (Q_VIRL_L or Q_VIRL_VL)."""
  return prompts.prompt_text(state.plan.instruction_text, _history(state, params),
                             absolute=params.absolute, vision=not params.language_only)


def expert_answer(state: State, params: EnvParams) -> str:
  """The expert's answer at the current rail point, in the SFT target format (ResponseVIRL)."""
  del params  # the action space is already in the rail
  point = state.point
  return prompts.response(point.observation, state.plan.instructions[point.instruction],
                          point.action)


def render(state: State, params: EnvParams) -> np.ndarray:
  """The 2x2 street-view grid at the current rail point, (2 res + 5, 2 res + 5, 3) uint8."""
  point = state.point
  if point.pano_id is None:
    raise ValueError(f"route {state.route_index}: no panorama within {params.snap_radius} m of"
                     f" rail point {state.position} at {point.geocode}")
  pano, rotation = views.load_pano(*routes.pano_paths(state.data_dir, point.pano_id))
  return views.render(pano, rotation, point.heading, view_headings=params.view_headings,
                      fov=params.fov, view_size=params.view_size, resolution=params.resolution,
                      interpolation=params.interpolation)


def _fresh_conversation(state: State, params: EnvParams) -> core.Conversation:
  image = None if params.language_only else Image.fromarray(render(state, params))
  return (core.Turn("user", prompt(state, params), image),)
