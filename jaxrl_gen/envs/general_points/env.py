"""GeneralPoints episodes as pure functions: `reset` deals, `step` grades one attempt.

Sequential revision (`reference.md` §2.9): the budget is `verify_iter` graded attempts. A
failed attempt appends the answer and the user turn "You failed this trial because
<message>" to the conversation. With `forced_fail_step` (the reference), one more call after
the budget ignores its answer and ends the episode: reward -1, truncated, Verify Info
"step_limit_reached"; without it the last graded attempt truncates. With `verification=False`
every episode ends after its first attempt. `terminated` only on a correct solution.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxrl_gen.envs import core
from jaxrl_gen.envs.general_points import solver, verifier
from jaxrl_gen.envs.general_points.cards import Hand, deal
from jaxrl_gen.envs.general_points.params import EnvParams
from jaxrl_gen.envs.general_points.prompts import prompt
from jaxrl_gen.envs.general_points.canvas import render

STEP_LIMIT = "step_limit_reached"
STEP_LIMIT_REWARD = -1.0


@dataclasses.dataclass(frozen=True)
class State:
  """One episode. `remaining` counts down from `verify_iter`, once per step (as the reference's
  `remaining_step`); `done` once it terminated or was truncated."""

  hand: Hand
  conversation: core.Conversation
  remaining: int
  solutions: tuple[str, ...]
  attempts: int = 0
  done: bool = False


def reset(key: Any, params: EnvParams) -> tuple[State, core.Conversation]:
  """A new episode from `key` (an int seed or a JAX PRNG key): a solvable hand and the first
  user turn (the prompt, and for GP-VL the rendered cards)."""
  hand = deal(key, params)
  return initial_state(hand, params)


def initial_state(hand: Hand, params: EnvParams) -> tuple[State, core.Conversation]:
  """The episode that starts from a given hand (what `reset` does after dealing)."""
  image = None if params.language_only else render(hand, params)
  conversation = (core.Turn("user", prompt(hand, params), image),)
  state = State(hand, conversation, params.verify_iter, solver.solutions(hand.numbers, params.target))
  return state, conversation


def step(state: State, answer_text: str, params: EnvParams):
  """Grades one answer. Returns (state, obs, reward, terminated, truncated, info); `obs` is the
  conversation to answer next or, once done, the finished transcript."""
  if state.done:
    raise ValueError("step() on a finished episode: call reset() for a new one")
  answer = answer_text if isinstance(answer_text, str) else str(answer_text or "")
  remaining = state.remaining - 1
  if remaining < 0 and params.verification and params.forced_fail_step:
    reward, message, formula = STEP_LIMIT_REWARD, STEP_LIMIT, None
    terminated, truncated = False, True
  else:
    grade = verifier.grade(answer, state.hand, params)
    reward, message, formula = grade.reward, grade.message, grade.formula
    terminated = reward == verifier.REWARD_FN["CORRECT_SOLUTION"]
    last = not params.verification or (remaining <= 0 and not params.forced_fail_step)
    truncated = not terminated and last
  done = terminated or truncated
  if done:
    conversation = state.conversation + (core.Turn("assistant", answer),)
  else:
    conversation = core.revise(state.conversation, answer, message)
  new_state = dataclasses.replace(state, conversation=conversation, remaining=remaining,
                                  attempts=state.attempts + 1, done=done)
  info = episode_info(new_state, message)
  info.update({"Formula": formula, "message": message, "success": terminated})
  return new_state, conversation, reward, terminated, truncated, info


def episode_info(state: State, verify_info: str | None = None) -> dict:
  """The reference's info keys for a state (Verify Info is None right after reset)."""
  hand = state.hand
  return {
      "Cards": hand.cards,
      "Plain Cards": hand.plain,
      "Numbers": hand.numbers,
      "Solution": state.solutions,
      "Remaining Step": state.remaining,
      "Verify Info": verify_info,
      "attempts": state.attempts,
  }
