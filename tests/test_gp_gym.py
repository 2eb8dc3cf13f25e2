"""The gymnasium adapter."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.envs.general_points import gym_env


@pytest.mark.parametrize("kwargs", [{}, {"language_only": False, "resolution": 128}])
def test_passes_gymnasiums_checker(kwargs):
  env = gym.make(gym_env.ENV_ID, **kwargs)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # the checker's warnings are failures too
    check_env(env.unwrapped, skip_render_check=True)


def test_episode_through_the_adapter():
  env = gym_env.GeneralPointsEnv(language_only=False, resolution=128, verify_iter=1,
                                 render_mode="rgb_array")
  obs, info = env.reset(seed=4)
  assert obs["text"] == info["conversation"][0].text
  assert obs["image"].shape == (128, 128, 3) and obs["image"].dtype == np.uint8
  assert env.render().shape == (128, 128, 3)
  obs, reward, terminated, truncated, info = env.step('"formula": "1"')
  assert reward == -1.5 and not (terminated or truncated)
  assert obs["text"] == "You failed this trial because you recognized wrong cards"
  obs, reward, terminated, truncated, info = env.step("anything")
  assert (reward, terminated, truncated) == (-1, False, True)
  assert info["Verify Info"] == "step_limit_reached"

  env.reset(seed=4)
  hand = gp.Hand.from_cards(info["Cards"])
  _, reward, terminated, _, _ = env.step(gp.expert_answer(hand, env.params))
  assert (reward, terminated) == (5, True)


def test_reset_seed_is_deterministic():
  env = gym_env.GeneralPointsEnv()
  first = env.reset(seed=9)[1]["Cards"]
  assert env.reset(seed=9)[1]["Cards"] == first
  assert len({env.reset()[1]["Cards"] for _ in range(10)}) > 5


def test_params_and_bad_arguments():
  params = gp.EnvParams(target=10)
  assert gym_env.GeneralPointsEnv(params=params, verify_iter=3).params == gp.EnvParams(
      target=10, verify_iter=3)
  with pytest.raises(ValueError, match="color='blue'"):
    gym_env.GeneralPointsEnv(color="blue")
  with pytest.raises(ValueError, match="render_mode"):
    gym_env.GeneralPointsEnv(render_mode="human")
