"""Batched lock-step episodes: the one driver PPO rollouts and evaluation share.

B slots each hold an episode. Every turn the caller takes the conversations of the active
slots, answers all of them at once (one batched generation), and `step`s: each slot's env
grades its answer; a slot whose episode ended (`terminated or truncated`) resets to the next
episode of the stream, or goes idle once `num_episodes` have been started. Each step returns
one `Transition` per answered slot, what the learner and the logs need.

Episode i of a stream always resets from the same key (`EpisodeStream`), so an evaluation's
episodes do not depend on B. Training uses its own stream (`stream` set, e.g. the process
index) whose keys never coincide with an evaluation's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from jaxrl_gen.envs import core


def episode_key(seed: int, episode: int, stream: int | None = None) -> np.ndarray:
  """The reset key of episode `episode`: uint32 words (seed, episode), or (seed, stream,
  episode) for a training stream."""
  words = (seed, episode) if stream is None else (seed, stream, episode)
  return np.array(words, dtype=np.uint32)


@dataclasses.dataclass(frozen=True)
class EpisodeStream:
  """Which episode comes next: episode i resets from `episode_key(seed, i, stream)` and, when
  `ordered` (the V-IRL mini benchmark), from route i of the split."""

  seed: int
  stream: int | None = None
  ordered: bool = False

  def reset(self, env: core.Env, params, index: int):
    kwargs = {"route_index": index} if self.ordered else {}
    return env.reset(episode_key(self.seed, index, self.stream), params, **kwargs)


@dataclasses.dataclass(frozen=True)
class Transition:
  """One generation: the conversation answered, the answer and what the env made of it."""

  episode: int  # index in the stream (the evaluation's sample_id)
  attempt: int  # steps taken earlier in this episode (the evaluation's veri_step)
  slot: int
  prompt: core.Conversation
  answer: str
  reward: float
  terminated: bool
  truncated: bool
  message: str | None  # the verifier's message ("Verify Info")
  info: dict
  payload: Any = None  # whatever the caller recorded with the answer (tokens, log-probs, value)

  @property
  def done(self) -> bool:
    return self.terminated or self.truncated


@dataclasses.dataclass
class _Slot:
  episode: int
  attempt: int
  state: Any
  conversation: core.Conversation
  answers: tuple[str, ...] = ()  # given so far in this episode (what `get_state` records)


class LockstepEpisodes:
  """B env slots stepped together; see the module docstring."""

  def __init__(self, env: core.Env, params, num_slots: int, stream: EpisodeStream,
               num_episodes: int | None = None):
    if num_slots < 1:
      raise ValueError(f"num_slots={num_slots}: must be >= 1")
    if num_episodes is not None and num_episodes < 0:
      raise ValueError(f"num_episodes={num_episodes}: must be >= 0 or None (endless)")
    self.env, self.params, self.stream, self.num_episodes = env, params, stream, num_episodes
    self.next_episode = 0
    self.slots: list[_Slot | None] = [None] * num_slots
    for slot in range(num_slots):
      self._start(slot)

  def _start(self, slot: int):
    if self.num_episodes is not None and self.next_episode >= self.num_episodes:
      self.slots[slot] = None
      return
    state, conversation = self.stream.reset(self.env, self.params, self.next_episode)
    self.slots[slot] = _Slot(self.next_episode, 0, state, conversation)
    self.next_episode += 1

  @property
  def active(self) -> list[int]:
    """The slots with an episode in progress, in slot order."""
    return [i for i, slot in enumerate(self.slots) if slot is not None]

  @property
  def done(self) -> bool:
    return not self.active

  def conversations(self) -> list[core.Conversation]:
    """What each active slot's model call sees next (active-slot order)."""
    return [self.slots[i].conversation for i in self.active]

  def states(self) -> list:
    """The env states of the active slots (for scripted policies; a model never reads them)."""
    return [self.slots[i].state for i in self.active]

  def step(self, answers: Sequence[str], payloads: Sequence[Any] | None = None) -> list[Transition]:
    """Steps every active slot with its answer; finished slots reset or go idle."""
    active = self.active
    if len(answers) != len(active):
      raise ValueError(f"{len(answers)} answers for {len(active)} active episodes")
    if payloads is not None and len(payloads) != len(active):
      raise ValueError(f"{len(payloads)} payloads for {len(active)} active episodes")
    transitions = []
    for n, (index, answer) in enumerate(zip(active, answers)):
      slot = self.slots[index]
      state, obs, reward, terminated, truncated, info = self.env.step(
          slot.state, answer, self.params)
      transitions.append(Transition(
          slot.episode, slot.attempt, index, slot.conversation, answer, float(reward),
          bool(terminated), bool(truncated), info.get("Verify Info"), info,
          None if payloads is None else payloads[n]))
      if terminated or truncated:
        self._start(index)
      else:
        self.slots[index] = _Slot(slot.episode, slot.attempt + 1, state, obs,
                                  slot.answers + (answer,))
    return transitions

  def get_state(self) -> dict:
    """The episodes in flight as plain JSON data: the next episode's index and, per slot, its
    episode and the answers given so far (None for an idle slot). No env state is stored: it
    is rebuilt by replaying the answers (`set_state`), as the envs are pure functions."""
    return {"next_episode": self.next_episode,
            "slots": [None if s is None else {"episode": s.episode, "answers": list(s.answers)}
                      for s in self.slots]}

  def set_state(self, saved: dict):
    """Restores `get_state`'s data: each slot's episode reset from its stream key and its
    answers stepped again, so its state and conversation are the saved run's."""
    slots = saved["slots"]
    if len(slots) != len(self.slots):
      raise ValueError(f"saved episodes have {len(slots)} slots, this run {len(self.slots)}")
    for index, entry in enumerate(slots):
      if entry is None:
        self.slots[index] = None
        continue
      episode = int(entry["episode"])
      state, conversation = self.stream.reset(self.env, self.params, episode)
      for answer in entry["answers"]:
        state, conversation, _, terminated, truncated, _ = self.env.step(
            state, str(answer), self.params)
        if terminated or truncated:
          raise ValueError(f"saved episode {episode} ends before its last answer: the env or "
                           "its parameters differ from the saved run's")
      self.slots[index] = _Slot(episode, len(entry["answers"]), state, conversation,
                                tuple(str(a) for a in entry["answers"]))
    self.next_episode = int(saved["next_episode"])
