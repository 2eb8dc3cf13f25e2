"""Memorization probes, run with each evaluation when `config.eval.probes` > 0: the question
the paper leaves open, what SFT and RL each do to what the model stores.

    results = probes.run(policy, config, key)    # {'exact_match_train': (hits, total), ...}

  exact_match_train     answers to the first `eval.probes` SFT training prompts that equal
                        their training target byte for byte (for GP the target's formula is
                        one solver formula drawn among the hand's, so a model that solves
                        without recalling matches it at the chance rate of one pick)
  exact_match_heldout   the same on held-out expert pairs (the data's test split): the chance
                        rate a memorised answer is measured against
  nll_train, nll_heldout  mean per-token negative log-likelihood of the training targets and
                        of the held-out expert answers (teacher forcing, answer tokens only)
  nll_gap               nll_heldout - nll_train: how much better the model predicts the exact
                        answers it was trained on than equally valid ones it was not

The rule-OOD probe is GeneralPoints' (`envs.general_points.evaluation`: `training_rule`, the
share of first answers to rule-OOD hands that use the ID rule's J/Q/K = 10). The SFT pairs are
regenerated from config.data's settings (`data.experts.episode_pairs`, the same pure function
of the seed the warm-up's data set was written from), so a probe needs no data files.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_gen import config_lib, envs, parallel
from jaxrl_gen.data import experts, pipeline, sources
from jaxrl_gen.data.expert_tfds import SPLITS
from jaxrl_gen.envs import core

NAME = "memorization"  # the results' key: eval/memorization/<metric>


def sft_pairs(config, count: int, split: str) -> list[experts.Pair]:
  """The first `count` single-turn expert pairs of config.data's `split` ('train', 'test')."""
  params = envs.params_from_config(config)
  options = dict(sources.task_options(config), revisions=0)
  pairs, index, seed = [], 0, config_lib.seed_of(config, "data")
  while len(pairs) < count:
    pairs += experts.episode_pairs(config.task, params, options, seed, SPLITS[split], index)
    index += 1
  return pairs[:count]


def prompt_of(pair: experts.Pair) -> core.Conversation:
  return (core.Turn("user", pair.prompt, pair.image),)


def exact_matches(policy, pairs: list[experts.Pair], key) -> tuple[int, int]:
  """(answers equal to their pair's target, pairs): one batched generation."""
  answers = policy([prompt_of(p) for p in pairs], key)
  return sum(a.strip() == p.response.strip() for a, p in zip(answers, pairs)), len(pairs)


@functools.partial(jax.jit, static_argnums=0)
def _loss_sums(graphdef, state, batch):
  from jaxrl_gen.train import sft  # noqa: PLC0415  (the trainer's loss, imported on use)

  total, _, count = sft.token_losses(graphdef, state, nnx.State({}), nnx.State({}), batch)
  return total, count


def answer_nll(policy, pairs: list[experts.Pair]) -> float:
  """Mean per-token NLL of each pair's target after its prompt (teacher forcing). Every
  process takes its contiguous share of the rows, padded to whole shards."""
  from jaxrl_gen.train import sft  # noqa: PLC0415  (as _loss_sums)

  model, processor = policy.model, policy.processor
  shards = parallel.batch_shards(policy.mesh, model.config.rules)
  rows = -(-len(pairs) // (shards * jax.process_count())) * shards * jax.process_count()
  mine = range(len(pairs))[parallel.process_share(rows)]
  images = int(any(p.image is not None for p in pairs))  # GP-VL: the card image, as SFT sees it
  examples = [pipeline.encode(pairs[i].conversation(), processor, max_length=10**6,
                              max_images=images, last_only=True) for i in mine]
  longest = max([len(e["input_ids"]) for e in examples] + [2])
  vision = model.config.vision
  local = pipeline.collate(examples or [_empty()], pad_id=processor.ids.pad,
                           buckets=(-(-longest // 64) * 64,), rows=rows // jax.process_count(),
                           max_images=images, max_tiles=processor.max_tiles,
                           image_size=vision.image_size if images else 0)
  if not examples:
    local["loss_mask"][:] = 0
  batch = parallel.global_batch(local, policy.mesh, model.config.rules,
                                {k: sft.BATCH_AXES[k] for k in local})
  graphdef, state = nnx.split(model)
  total, count = jax.device_get(_loss_sums(graphdef, state, batch))
  return float(total) / max(float(count), 1.0)


def _empty() -> dict:
  return {"input_ids": np.zeros(2, np.int32), "loss_mask": np.zeros(2, np.int32)}


def run(policy: Any, config, key) -> dict[str, Any]:
  """The probes over `config.eval.probes` training and held-out pairs: exact matches as
  (hits, total), NLLs as floats (a scripted policy, which has no model, gets exact matches
  only)."""
  count = config.eval.probes
  train, heldout = sft_pairs(config, count, "train"), sft_pairs(config, count, "test")
  out: dict[str, Any] = {
      "exact_match_train": exact_matches(policy, train, jax.random.fold_in(key, 0)),
      "exact_match_heldout": exact_matches(policy, heldout, jax.random.fold_in(key, 1))}
  if hasattr(policy, "model"):
    out["nll_train"], out["nll_heldout"] = answer_nll(policy, train), answer_nll(policy, heldout)
    out["nll_gap"] = out["nll_heldout"] - out["nll_train"]
  return out
