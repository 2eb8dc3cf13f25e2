"""The model as a policy: conversations in, answers out, through one batched generation.

    policy = ModelPolicy(model, processor,
                         sampling_kwargs=sampling.kwargs_from_config(config.sampling), mesh=mesh)
    answers = policy(conversations, key)          # what `eval.evaluate` calls (replicated)
    generations = policy.generate(conversations, key)  # what the rollout records (per process)

Each conversation is rendered with the chat template (`Processor.encode_prompt`, the
reference's `apply_chat_template(..., add_generation_prompt=True)`), its images tiled by the
image processor, the whole batch sampled by `sampling.generate`, and every output decoded
with special tokens skipped (the text the environment grades).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx

from jaxrl_gen import parallel, sampling
from jaxrl_gen.envs import core
from jaxrl_gen.text import images as images_lib
from jaxrl_gen.text.processor import Processor


@dataclasses.dataclass(frozen=True)
class Generation:
  """One answer and what the learner needs of it (host NumPy)."""

  prompt_ids: np.ndarray  # int32 [P]: the rendered conversation
  image_arrays: dict | None  # pixel_values / aspect_ratio_ids / aspect_ratio_mask, batch dim 1
  tokens: np.ndarray  # int32 [n]: the new tokens, EOS included when emitted
  logprobs: np.ndarray  # fp32 [n]: at the sampling temperature
  prompt_hidden: np.ndarray  # fp32 [hidden]: the last prompt token's final hidden state
  finished: bool  # ended with an EOS id (False: the budget ran out)
  text: str  # the decoded answer


class ModelPolicy:
  """A model (a `Model`, or its `nnx.split` pair) with its processor and sampling settings."""

  def __init__(self, model: nnx.Module | tuple[nnx.GraphDef, nnx.State], processor: Processor,
               *, sampling_kwargs: dict[str, Any], mesh=None, max_rows: int = 0):
    self.model, self.processor, self.mesh = model, processor, mesh
    self.sampling_kwargs = dict(sampling_kwargs)
    self.max_rows = max_rows

  def generate(self, conversations: Sequence[core.Conversation], key, **overrides
               ) -> list[Generation]:
    """Answers every conversation with one `sampling.generate` call, or with consecutive
    calls of at most `max_rows` conversations (`sampling.max_rows`: the sampler's memory
    grows with the rows it decodes at once); `overrides` replace sampling settings, e.g.
    `max_new_tokens=1` for the prompts' hidden states only. Call i > 0 samples with
    fold_in(key, i). Every process makes as many calls as the process with the most."""
    if not self.max_rows or (len(conversations) <= self.max_rows and jax.process_count() == 1):
      return self._generate(conversations, key, **overrides)
    rows = self.max_rows
    calls = -(-len(conversations) // rows)
    if jax.process_count() > 1:
      calls = int(parallel.process_max(np.array([calls]))[0])
    out = []
    for i in range(calls):
      chunk = conversations[i * rows:(i + 1) * rows]
      answers = self._generate(chunk or conversations[:1],  # a stand-in keeps the collectives
                               key if i == 0 else jax.random.fold_in(key, i), **overrides)
      out.extend(answers[:len(chunk)])
    return out

  def _generate(self, conversations: Sequence[core.Conversation], key, **overrides
                ) -> list[Generation]:
    encoded = [self.processor.encode_prompt(c) for c in conversations]
    image_rows = [self.image_arrays(e.images) for e in encoded]
    images = None
    if any(row is not None for row in image_rows):
      images = sampling.ImageInputs.from_rows(image_rows)
    result = sampling.generate(
        self.model, [e.ids for e in encoded], key=key, images=images,
        eos_ids=self.processor.ids.stop, pad_id=self.processor.ids.pad, mesh=self.mesh,
        **{**self.sampling_kwargs, **overrides})
    out = []
    for i, (e, row) in enumerate(zip(encoded, image_rows)):
      n = int(result.lengths[i])
      tokens = result.tokens[i, :n].astype(np.int32)
      out.append(Generation(e.ids, row, tokens, result.logprobs[i, :n].astype(np.float32),
                            result.prompt_hidden[i].astype(np.float32),
                            bool(result.finished[i]), self.processor.decode(tokens)))
    return out

  def encode(self, conversations: Sequence[core.Conversation]) -> list[Generation]:
    """Each conversation's prompt alone (no new tokens): what a prompt-only scoring pass reads,
    e.g. the bootstrap value of the states after a rollout."""
    out = []
    for c in conversations:
      e = self.processor.encode_prompt(c)
      out.append(Generation(np.asarray(e.ids, np.int32), self.image_arrays(e.images),
                            np.zeros(0, np.int32), np.zeros(0, np.float32), None, False, ""))
    return out

  def __call__(self, conversations: Sequence[core.Conversation], key) -> list[str]:
    """The answers to `conversations`, which every process passes alike (an evaluation
    replicates its episodes on each): each process samples its contiguous share, as row
    offset + j of the whole batch, so the answers do not depend on the process count, and
    all answers are gathered on every process."""
    if jax.process_count() == 1:
      return [g.text for g in self.generate(conversations, key)]
    share = parallel.process_share(len(conversations))
    mine = list(conversations[share])
    # A process with no share still joins the collective call, with a row it drops.
    texts = [g.text for g in self.generate(mine or list(conversations[:1]), key)]
    return parallel.allgather_texts(texts if mine else [])

  def image_arrays(self, row_images: Sequence[Any]) -> dict | None:
    """The image processor's arrays for one prompt's images (None without images)."""
    if not row_images:
      return None
    arrays, _ = images_lib.preprocess(self.processor.image_processor, [list(row_images)])
    return arrays
