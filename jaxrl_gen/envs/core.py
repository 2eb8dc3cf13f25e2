"""The environment protocol: pure functions over immutable state.

Every task module (`general_points`, `virl`) exposes

    state, obs = reset(key, params)
    state, obs, reward, terminated, truncated, info = step(state, answer_text, params)
    reward, message = verify(answer_text, ground_truth, params)

`params` is a frozen dataclass of the variant, `state` an immutable value, `obs` a
`Conversation`: the chat the model answers next. There is no global or hidden RNG: `reset`
derives everything from `key`, `step` is deterministic. The environment never touches JAX
arrays; `key` may be a JAX PRNG key, which is turned into an integer seed here.

Each task package also exports `TASK`, its `Task` record: what evaluation, the action spans
and the trainers need to know of the task (benchmarks, scoring, answer field, expert).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

FEEDBACK_PREFIX = "You failed this trial because "


@dataclasses.dataclass(frozen=True)
class Turn:
  """One chat message. `image` is set only on the turn that carries the observation image."""

  role: str  # 'user' | 'assistant'
  text: str
  image: Any = None  # PIL.Image.Image or None

  def __post_init__(self):
    if self.role not in ("user", "assistant", "system"):
      raise ValueError(f"Turn.role must be 'user', 'assistant' or 'system', got {self.role!r}")


Conversation = tuple[Turn, ...]


def to_chat(conversation: Sequence[Turn]) -> list[dict]:
  """The conversation as the message list `apply_chat_template` takes (HF content parts)."""
  messages = []
  for turn in conversation:
    content = [{"type": "image"}] if turn.image is not None else []
    content.append({"type": "text", "text": turn.text})
    messages.append({"role": turn.role, "content": content})
  return messages


def images(conversation: Sequence[Turn]) -> list:
  """The images of a conversation, in order (what the image processor receives)."""
  return [turn.image for turn in conversation if turn.image is not None]


def revise(conversation: Conversation, answer: str, message: str) -> Conversation:
  """Sequential revision: the failed answer and the verifier's feedback appended."""
  return conversation + (
      Turn("assistant", answer),
      Turn("user", FEEDBACK_PREFIX + message),
  )


def seed_from_key(key: Any) -> int:
  """An integer seed from an int or a JAX PRNG key (typed or raw uint32), without JAX ops."""
  if isinstance(key, (int, np.integer)):
    if key < 0:
      raise ValueError(f"seed must be non-negative, got {key}")
    return int(key)
  data = key
  if getattr(getattr(key, "dtype", None), "name", "").startswith("key"):
    import jax  # only typed keys need JAX to expose their bits

    data = jax.random.key_data(key)
  words = np.asarray(data).astype(np.uint64).ravel()
  seed = 0
  for word in words:
    seed = (seed << 32) | int(word)
  return seed


def rng(key: Any) -> np.random.Generator:
  """The NumPy generator a reset draws from: deterministic per key."""
  return np.random.default_rng(seed_from_key(key))


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """One evaluation benchmark: the env settings and which episodes (episode i resets from key
  (seed, i); `ordered`: the split's routes in order instead of drawn)."""

  name: str
  task: str
  params: Any  # the task's EnvParams
  episodes: int
  seed: int
  ordered: bool = False


@dataclasses.dataclass(frozen=True)
class Task:
  """What evaluation, the action spans and the trainers read of a task. Each task package
  exports one as `TASK` (`envs.task(name)`), so no caller branches on a task's name."""

  name: str
  reward_names: Mapping[str, float]  # the reference StatLogger's table: name -> step reward
  action_field: str  # the answer's JSON field whose tokens are the action
  # What an answer claims, comparable across a group; None when not in the task's format.
  answer_key: Callable[[str], str | None]
  expert_answer: Callable[[Any, Any], str]  # (state, params) -> the always-correct answer
  episode_success: Callable[[Sequence[Any]], bool]  # over an episode's transitions
  # Whether episodes under these env settings are single attempts (no verifier feedback
  # reaches them); reads the task's EnvParams or the config's env section (same fields).
  single_attempt: Callable[[Any], bool]
  benchmarks: tuple[str, ...]
  paper_benchmarks: Mapping[str, tuple[str, ...]]  # per variant: what eval 'all' runs
  benchmark: Callable[[Any, str], Benchmark]  # (run config, one of `benchmarks`)
  # (benchmark, transitions, episodes) -> {metric: (hits, total)}, scored as the paper does
  counts: Callable[[Benchmark, Sequence[Any], Sequence[Sequence[Any]]],
                   dict[str, tuple[int, int]]]
  headline: Callable[[str], str]  # benchmark name -> the metric it is plotted by
  # (state, params) -> whether the next step ignores its answer (the forced-fail step past
  # the verification budget, `forced_fail_step`): evaluation need not generate it.
  ignores_answer: Callable[[Any, Any], bool]
  success_reward: float | None = None  # a step reward that ends an episode solved
  # The StatLogger's CORRECT_SOLUTION counts the episodes that succeeded (the reference's
  # log_virl_success), not the steps rewarded as CORRECT_SOLUTION.
  solutions_are_episodes: bool = False
  # An episode's hand, stable across runs and phases (GP: its cards; V-IRL: its route), read
  # from a step's info; what pairs two evaluations' outcomes (`eval.outcomes`).
  hand_id: Callable[[Mapping[str, Any]], str | None] = lambda info: None
  # Whether the verifier graded a step's answer (a transition): not a forced-fail step.
  graded: Callable[[Any], bool] = lambda transition: True


class Env(Protocol):
  """What a task module provides (a module satisfies this structurally)."""

  reset: Callable
  step: Callable
  verify: Callable


def reset_batch(env: Env, keys: Sequence[Any], params) -> tuple[list, list]:
  """`reset` over many keys; returns (states, observations)."""
  pairs = [env.reset(key, params) for key in keys]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def step_batch(env: Env, states: Sequence, answers: Sequence[str], params) -> tuple[list, ...]:
  """`step` over parallel episodes; returns lists (states, obs, rewards, terms, truncs, infos)."""
  if len(states) != len(answers):
    raise ValueError(f"{len(states)} states but {len(answers)} answers")
  results = [env.step(s, a, params) for s, a in zip(states, answers)]
  return tuple(list(column) for column in zip(*results)) if results else ([],) * 6
