"""A `gymnasium.Env` over the pure functions, for code that expects that interface.

    import gymnasium as gym
    import jaxrl_gen.envs.general_points.gym_env  # registers the id
    env = gym.make("jaxrl_gen/GeneralPoints-v0", language_only=False, color="red")

The action is the model's answer text. The observation is the newest user message (the prompt
after `reset`, then "You failed this trial because ..."); GP-VL observations are a dict that
adds the card image as a uint8 HWC array. `info["conversation"]` holds the whole chat. Keyword
arguments are `EnvParams` fields (or pass `params=`).
"""

from __future__ import annotations

import dataclasses
import string

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from jaxrl_gen.envs import fields
from jaxrl_gen.envs.general_points import env as gp_env
from jaxrl_gen.envs.general_points.params import EnvParams
from jaxrl_gen.envs.general_points.canvas import render

ENV_ID = "jaxrl_gen/GeneralPoints-v0"
# Prompts and verifier messages are printable ASCII. The longest message is the legacy mode's
# list of every syntax violation of a maximal answer (about 33 characters per character read).
CHARSET = string.printable
MAX_OBSERVATION_CHARS = 40 * fields.MAX_ANSWER_CHARS


class GeneralPointsEnv(gym.Env):
  metadata = {"render_modes": ["rgb_array"], "render_fps": 1}

  def __init__(self, params: EnvParams | None = None, render_mode: str | None = None, **kwargs):
    params = params if params is not None else EnvParams()
    self.params = dataclasses.replace(params, **kwargs) if kwargs else params
    if render_mode not in (None, "rgb_array"):
      raise ValueError(f"render_mode={render_mode!r}: must be None or 'rgb_array'")
    self.render_mode = render_mode
    text = spaces.Text(max_length=MAX_OBSERVATION_CHARS, min_length=0, charset=CHARSET)
    if self.params.language_only:
      self.observation_space = text
    else:
      size = self.params.resolution
      self.observation_space = spaces.Dict(
          {"text": text, "image": spaces.Box(0, 255, (size, size, 3), np.uint8)})
    # Any text is a valid action; this space only describes what `sample()` draws.
    self.action_space = spaces.Text(max_length=fields.MAX_ANSWER_CHARS, min_length=0,
                                    charset=CHARSET)
    self._state = None
    self._image = None

  def reset(self, *, seed: int | None = None, options: dict | None = None):
    super().reset(seed=seed)
    key = int(self.np_random.integers(1 << 62))  # the episode's seed, from gymnasium's RNG
    self._state, conversation = gp_env.reset(key, self.params)
    self._image = None if self.params.language_only else np.asarray(conversation[0].image)
    info = gp_env.episode_info(self._state)
    info["conversation"] = conversation
    return self._observation(conversation), info

  def step(self, action: str):
    if self._state is None:
      raise RuntimeError("call reset() before step()")
    self._state, conversation, reward, terminated, truncated, info = gp_env.step(
        self._state, action, self.params)
    info["conversation"] = conversation
    return self._observation(conversation), reward, terminated, truncated, info

  def render(self):
    if self.render_mode == "rgb_array" and self._state is not None:
      return np.asarray(render(self._state.hand, self.params))
    return None

  def _observation(self, conversation):
    text = next(turn.text for turn in reversed(conversation) if turn.role == "user")
    if self.params.language_only:
      return text
    return {"text": text, "image": self._image.copy()}  # callers own what they are given


gym.register(id=ENV_ID, entry_point=f"{__name__}:GeneralPointsEnv")
