"""Rollouts (`reference.md` §4.2, §4.4): the model plays B lock-step episodes, and what it
did becomes the PPO buffer.

    steps = collect(policy, runner, turns, key, timings)   # PPO: [turn][slot] Transitions
    batch, turns = to_batch(steps, processor, rule=..., task=...)   # N = turns x B rows
    episodes = collect_episodes(policy, group_runner, key)  # GRPO: whole episodes of groups

Every turn is one batched `ModelPolicy.generate` over the B slots' conversations, decoded and
graded by each slot's env (`envs.batch.LockstepEpisodes`; ended episodes reset at once, so
every turn stays B wide). A transition is one generation: the rendered prompt (+ image),
the output tokens, their action / thought masks, the reward and the episode flags.

Buffer rows are time-major (row t * B + b is slot b's turn t) and hold one sequence per
transition, [prompt left-padded to P; output right-padded to L], which the learner scores
teacher-forced: output token j sits at position P + j and is predicted at P + j - 1, and the
value reads the hidden state at P - 1 (the last prompt token). Images keep their processed
arrays; the cross-attention mask of the output tokens repeats the prompt's last row, as
transformers' generate extends it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from typing import Sequence

import jax
import numpy as np

from jaxrl_gen import envs, parallel
from jaxrl_gen.envs import batch as batch_lib
from jaxrl_gen.policy import Generation, ModelPolicy
from jaxrl_gen.sampling import inputs as sampling_inputs
from jaxrl_gen.text.processor import Processor
from jaxrl_gen.train import action_span
from jaxrl_gen.train.batch import RolloutBatch

class Timings(collections.defaultdict):
  """Seconds spent per phase ('decode', 'env', 'rescore', 'update', ...)."""

  def __init__(self):
    super().__init__(float)

  @contextlib.contextmanager
  def phase(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self[name] += time.perf_counter() - start


@dataclasses.dataclass(frozen=True)
class GroupStream:
  """An episode stream for groups: slots i*n .. i*n + n - 1 all play episode `offset + i` of
  `base` (the same reset key), so each group's members answer the same first prompt."""

  base: batch_lib.EpisodeStream
  group_size: int
  offset: int = 0

  def reset(self, env, params, index: int):
    return self.base.reset(env, params, self.offset + index // self.group_size)


def collect_episodes(policy: ModelPolicy, runner: batch_lib.LockstepEpisodes, key,
                     timings: Timings | None = None) -> list[batch_lib.Transition]:
  """Every episode of a finite `runner` played to its end, one batched generation of the
  active slots a turn; the transitions in the order they happened (payload: the
  `Generation`). Multi-process: the processes take turns together until every process's
  episodes have ended (a process with none left answers a stand-in conversation it drops)."""
  timings = Timings() if timings is None else timings
  out, turn, last = [], 0, None
  while int(parallel.process_max(np.array([len(runner.active)]))[0]):
    conversations = runner.conversations()
    last = conversations[0] if conversations else last
    with timings.phase("decode"):
      generations = policy.generate(conversations or [last],
                                    jax.random.fold_in(key, turn))
    if conversations:
      with timings.phase("env"):
        out.extend(runner.step([g.text for g in generations], generations))
    turn += 1
  return out


def collect(policy: ModelPolicy, runner: batch_lib.LockstepEpisodes, turns: int, key,
            timings: Timings | None = None) -> list[list[batch_lib.Transition]]:
  """`turns` batched turns of every slot; each transition's payload is its `Generation`."""
  timings = Timings() if timings is None else timings
  steps = []
  for turn in range(turns):
    if len(runner.active) != len(runner.slots):
      raise ValueError("rollouts need an endless episode stream (every slot active)")
    with timings.phase("decode"):
      generations = policy.generate(runner.conversations(), jax.random.fold_in(key, turn))
    with timings.phase("env"):
      steps.append(runner.step([g.text for g in generations], generations))
  return steps


# --- Action spans ---------------------------------------------------------------------------


def token_offsets(processor: Processor, tokens: Sequence[int], text: str) -> list[int]:
  """Character offset in the decoded `text` where each output token starts (special tokens,
  skipped by decoding, are zero-width)."""
  tokens = [int(t) for t in tokens]
  pieces = processor.tokenizer.batch_decode([[t] for t in tokens], skip_special_tokens=True)
  if "".join(pieces) == text:
    return action_span.token_starts(pieces)
  # Multi-byte characters split across tokens: prefix decodes are exact (and rare here).
  starts, last = [], 0
  for i in range(len(tokens)):
    last = min(max(last, len(processor.decode(tokens[:i]))), len(text))
    starts.append(last)
  return starts


def span(processor: Processor, generation: Generation, rule: str, task: str,
         legacy_pattern: Sequence[int]) -> action_span.Span:
  """The action / thought masks of one output under `ppo.action_span`."""
  if rule == "legacy":
    return action_span.legacy_masks(generation.tokens, legacy_pattern)
  starts = token_offsets(processor, generation.tokens, generation.text)
  return action_span.field_masks(generation.text, starts, envs.task(task).action_field)


def legacy_pattern(processor: Processor) -> list[int]:
  """The ids of ` "formula":` in this tokenizer (the reference's split pattern)."""
  return processor.tokenizer(' "formula":', add_special_tokens=False)["input_ids"]


# --- The buffer -----------------------------------------------------------------------------


def buffer_shape(generations: Sequence[Generation], multiple: int = 64
                 ) -> tuple[int, int, int]:
  """(P, L, image slots) the rows of `generations` need: the longest prompt and the longest
  output, each rounded up to a multiple of `multiple` (finer than the sampler's power-of-two
  buckets: the update's cost grows with the padded length), and the most images of a row."""
  def up(n: int) -> int:
    return -(-max(n, 1) // multiple) * multiple
  slots = max((np.shape(g.image_arrays["aspect_ratio_ids"])[1] for g in generations
               if g.image_arrays is not None), default=0)
  return (up(max(len(g.prompt_ids) for g in generations)),
          up(max(len(g.tokens) for g in generations)), slots)


def sequences(generations: Sequence[Generation], pad_id: int, image_token_id: int | None,
              multiple: int = 64, min_shape: tuple[int, int, int] = (0, 0, 0)
              ) -> RolloutBatch:
  """[prompt; output] rows of a batch of generations: `input_ids`, `attention_mask`, the
  output tokens' `output_ids` [N, L] and, when any row has an image, the image arrays.
  P, L and the image slots are `buffer_shape`'s, and at least `min_shape`. A generation
  without tokens (`policy.encode`) is its prompt alone: its row's value is that state's."""
  n = len(generations)
  prompt_len, output_len, slots = (int(n) for n in np.maximum(
      buffer_shape(generations, multiple), min_shape))
  ids = np.full((n, prompt_len + output_len), pad_id, np.int32)
  mask = np.zeros_like(ids)
  for i, g in enumerate(generations):
    p, k = len(g.prompt_ids), len(g.tokens)
    ids[i, prompt_len - p:prompt_len] = g.prompt_ids
    ids[i, prompt_len:prompt_len + k] = g.tokens
    mask[i, prompt_len - p:prompt_len + k] = 1
  out = {"input_ids": ids, "attention_mask": mask, "output_ids": ids[:, prompt_len:].copy()}
  rows = [g.image_arrays for g in generations]
  if any(r is not None for r in rows):
    images = sampling_inputs.ImageInputs.from_rows(rows)
    arrays = images.padded([g.prompt_ids for g in generations], prompt_len, n, image_token_id,
                           slots)
    cross = np.zeros(ids.shape + arrays["cross_attention_mask"].shape[2:], np.int32)
    cross[:, :prompt_len] = arrays.pop("cross_attention_mask")
    cross[:, prompt_len:] = cross[:, prompt_len - 1:prompt_len]  # outputs see what the prompt's
    out.update(arrays, cross_attention_mask=cross)               # last token saw
  return RolloutBatch(**out)


@dataclasses.dataclass(frozen=True)
class Turns:
  """The rollout's per-turn arrays [T, B] the returns are computed from (host side)."""
  rewards: np.ndarray
  terminated: np.ndarray
  truncated: np.ndarray


def to_rows(transitions: Sequence[batch_lib.Transition], processor: Processor, *, rule: str,
            task: str, multiple: int = 64, min_shape: tuple[int, int, int] = (0, 0, 0)
            ) -> RolloutBatch:
  """One row per transition, in order, with its action / thought masks. A run passes the
  largest (P, L, image slots) it has used as `min_shape`, so its steps compile once per shape
  reached."""
  generations = [t.payload for t in transitions]
  batch = sequences(generations, processor.ids.pad, processor.ids.image, multiple, min_shape)
  pattern = legacy_pattern(processor) if rule == "legacy" else ()
  spans = [span(processor, g, rule, task, pattern) for g in generations]
  return batch.replace(**action_span.stack(spans, batch.output_ids.shape[1]),
                       valid=np.ones(len(transitions), bool))


def to_batch(steps: Sequence[Sequence[batch_lib.Transition]], processor: Processor, *,
             rule: str, task: str, multiple: int = 64,
             min_shape: tuple[int, int, int] = (0, 0, 0)) -> tuple[RolloutBatch, Turns]:
  """The rows of a lock-step rollout (time-major: row t * B + b is slot b's turn t) and its
  `Turns`."""
  flat = [t for step in steps for t in step]
  batch = to_rows(flat, processor, rule=rule, task=task, multiple=multiple, min_shape=min_shape)
  shape = (len(steps), len(steps[0]))
  return batch, Turns(np.array([t.reward for t in flat], np.float32).reshape(shape),
                      np.array([t.terminated for t in flat], bool).reshape(shape),
                      np.array([t.truncated for t in flat], bool).reshape(shape))


def prompt_rows(prompts: Sequence[Generation], processor: Processor, like: RolloutBatch
                ) -> RolloutBatch:
  """Prompt-only rows (`policy.encode`) shaped like the rollout's rows `like` (at least its
  P, L and image slots): the scoring pass reads each row's value at its last prompt token."""
  output = like.output_ids.shape[1]
  slots = 0 if like.aspect_ratio_ids is None else like.aspect_ratio_ids.shape[1]
  prompt = like.input_ids.shape[1] - output
  rows = sequences(prompts, processor.ids.pad, processor.ids.image, 1, (prompt, output, slots))
  n = len(prompts)
  return rows.replace(thought_mask=np.zeros((n, output), np.float32),
                      action_mask=np.zeros((n, output), np.float32),
                      constant_logp=np.zeros(n, bool), valid=np.ones(n, bool))


# Per-transition numbers the rollout metrics are computed from (a table, so processes can
# gather theirs into one).
STAT_COLUMNS = ("reward", "done", "success", "attempt", "finished", "output_tokens", "tokens")


def stat_table(flat: Sequence[batch_lib.Transition], success_reward: float | None
               ) -> np.ndarray:
  """[N, len(STAT_COLUMNS)] float64: one row per transition (success: the reward is GP's
  success reward; NaN for tasks without one)."""
  return np.array([(t.reward, t.done,
                    np.nan if success_reward is None else t.reward == success_reward,
                    t.attempt, t.payload.finished, len(t.payload.tokens),
                    len(t.payload.prompt_ids) + len(t.payload.tokens)) for t in flat],
                  np.float64).reshape(len(flat), len(STAT_COLUMNS))


def episode_stats(table: np.ndarray) -> dict[str, float]:
  """Rollout metrics of a `stat_table`: mean reward per generation, and over the episodes
  that ended in this rollout (wherever they started: episodes cross update boundaries), their
  number, mean length and (GP) success rate; the success of first attempts alone."""
  col = {name: table[:, i] for i, name in enumerate(STAT_COLUMNS)}
  out = {"rollout/generations": float(len(table)),
         "rollout/reward": float(col["reward"].mean()),
         "rollout/finished_outputs": float(col["finished"].mean()),
         "rollout/output_tokens": float(col["output_tokens"].mean()),
         "rollout/tokens": float(col["tokens"].sum())}
  ended = col["done"] > 0
  out["rollout/episodes"] = float(ended.sum())
  if ended.any():
    out["rollout/episode_length"] = float((col["attempt"][ended] + 1).mean())
  if not np.isnan(col["success"]).any():
    if ended.any():
      out["rollout/success"] = float(col["success"][ended].mean())
    first = col["attempt"] == 0
    if first.any():
      out["rollout/first_attempt_success"] = float(col["success"][first].mean())
  return out
