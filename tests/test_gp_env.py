"""GeneralPoints episodes: reset, sequential revision, budget, forced-fail step, truncation."""

import jax
import pytest
from PIL import Image

from jaxrl_gen.envs import core
from jaxrl_gen.envs import general_points as gp

WRONG = '{"formula": "1+1"}'


def expert(state, params):
  return gp.expert_answer(state.hand, params)


def test_reset():
  params = gp.EnvParams()
  state, obs = gp.reset(3, params)
  assert obs == state.conversation and len(obs) == 1
  assert obs[0].role == "user" and obs[0].text == gp.prompt(state.hand, params)
  assert obs[0].image is None
  assert state.remaining == 5 and state.attempts == 0 and not state.done
  assert list(state.solutions) == gp.solve(state.hand.numbers)
  info = gp.episode_info(state)
  assert info["Verify Info"] is None and info["Remaining Step"] == 5
  assert info["Plain Cards"] == state.hand.plain and info["Numbers"] == state.hand.numbers

  vl = gp.EnvParams(language_only=False, color="black")
  state, obs = gp.reset(3, vl)
  assert isinstance(obs[0].image, Image.Image) and obs[0].image.size == (1200, 1200)
  assert core.images(obs) == [obs[0].image]


def test_same_key_same_episode():
  params = gp.EnvParams(language_only=False, color="red")
  for key in (11, jax.random.key(11)):
    (a, _), (b, _) = gp.reset(key, params), gp.reset(key, params)
    assert a.hand == b.hand and a.conversation[0].text == b.conversation[0].text
    for answer in (WRONG, "junk"):
      a, *ra = gp.step(a, answer, params)
      b, *rb = gp.step(b, answer, params)
      assert ra[1:4] == rb[1:4] and a.conversation[1:] == b.conversation[1:]


def test_sequential_revision_format():
  params = gp.EnvParams()
  state, obs = gp.reset(0, params)
  state, obs, reward, terminated, truncated, info = gp.step(state, WRONG, params)
  assert (terminated, truncated) == (False, False)
  reward_expected, message = gp.verify(WRONG, state.hand, params)
  assert reward == reward_expected and info["Verify Info"] == info["message"] == message
  assert info["Formula"] == "1+1" and info["success"] is False
  assert [t.role for t in obs] == ["user", "assistant", "user"]
  assert obs[1].text == WRONG and obs[2].text == "You failed this trial because " + message
  assert info["Remaining Step"] == 4 and state.attempts == 1
  state, obs, reward, terminated, truncated, info = gp.step(state, expert(state, params), params)
  assert (reward, terminated, truncated) == (5, True, False)
  assert info["success"] is True and info["Verify Info"] == "Correct solution."
  assert [t.role for t in obs] == ["user", "assistant", "user", "assistant"]  # the transcript
  with pytest.raises(ValueError, match="finished episode"):
    gp.step(state, WRONG, params)


def test_forced_fail_step_after_the_budget():
  params = gp.EnvParams(verify_iter=2)
  state, _ = gp.reset(1, params)
  for remaining in (1, 0):
    state, obs, reward, terminated, truncated, info = gp.step(state, WRONG, params)
    assert not (terminated or truncated) and info["Remaining Step"] == remaining
  # the extra generation is ignored, even a correct one
  state, obs, reward, terminated, truncated, info = gp.step(state, expert(state, params), params)
  assert (reward, terminated, truncated) == (-1, False, True)
  assert info["Verify Info"] == "step_limit_reached" and info["Remaining Step"] == -1
  assert state.done and state.attempts == 3 and obs[-1].role == "assistant"


def test_without_the_forced_fail_step_the_last_attempt_truncates():
  params = gp.EnvParams(verify_iter=2, forced_fail_step=False)
  state, _ = gp.reset(1, params)
  state, *_, truncated, _ = gp.step(state, WRONG, params)
  assert not truncated
  state, _, reward, terminated, truncated, info = gp.step(state, WRONG, params)
  assert (terminated, truncated) == (False, True) and reward == gp.verify(WRONG, state.hand, params)[0]
  state, _ = gp.reset(1, params)
  state, *_ = gp.step(state, WRONG, params)
  *_, terminated, truncated, _ = gp.step(state, expert(state, params), params)
  assert (terminated, truncated) == (True, False)


def test_without_verification_one_attempt_per_episode():
  params = gp.EnvParams(verification=False, language_only=False, color="black")
  state, _ = gp.reset(2, params)
  state, _, reward, terminated, truncated, info = gp.step(state, "no cards at all", params)
  assert (reward, terminated, truncated) == (-1.5, False, True) and state.done
  state, _ = gp.reset(2, params)
  *_, terminated, truncated, _ = gp.step(state, expert(state, params), params)
  assert (terminated, truncated) == (True, False)


def test_legacy_terminates_only_on_5():
  params = gp.EnvParams(reward_mode="legacy")
  state, _ = gp.initial_state(gp.Hand.from_cards(("ST", "H4", "C3", "DA")), params)
  state, _, reward, terminated, truncated, _ = gp.step(state, '"formula": "(10-4)*(3+1"', params)
  assert (reward, terminated, truncated) == (1, False, False)


def test_batched_helpers_and_protocol():
  params = gp.EnvParams()
  states, observations = core.reset_batch(gp, [0, 1, 2], params)
  answers = [WRONG, expert(states[1], params), "x"]
  states, observations, rewards, terminated, truncated, infos = core.step_batch(
      gp, states, answers, params)
  assert rewards[1] == 5 and terminated == [False, True, False] and len(infos) == 3
