"""The model side of RL: the policy (and critic) modules, the teacher-forced scoring the losses
call, the no-grad scoring passes after a rollout, and the update: pure functions that
`steps.rl` jits with the mesh's shardings.

PPO trains the policy and its critic as one `ActorCritic` module (the Mllama `Model` and a
`ValueHead` on its last-prompt-token hidden state); the GRPO family trains a bare `Policy`
(no value head). Either is one `TrainState` (`state.py`): freezing is by parameter path
(`ppo.freeze` regexes, e.g. 'vision_model'), the frozen part never gets gradients or optimizer
state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.models import mllama
from jaxrl_gen.models.inputs import IMAGE_KEYS, MODEL_INPUTS
from jaxrl_gen.train import ppo, token_loss
from jaxrl_gen.train.batch import RolloutBatch
from jaxrl_gen.train.state import TrainState


class ActorCritic(nnx.Module):
  """The policy model and its value head (paths 'model.*' and 'value.*')."""

  def __init__(self, model: mllama.Model, value: ppo.ValueHead):
    self.model, self.value = model, value


class Policy(nnx.Module):
  """The policy model alone (path 'model.*'): the GRPO family's trained module."""

  def __init__(self, model: mllama.Model):
    self.model = model


def actor_critic(model: mllama.Model, value_hidden: tuple[int, ...], *, seed: int
                 ) -> ActorCritic:
  """`model` with a fresh value head (Flax's default initialisers, key `seed`)."""
  head = ppo.ValueHead(model.config.text.hidden_size, value_hidden, rngs=nnx.Rngs(seed),
                       param_dtype=model.config.param_dtype)
  return ActorCritic(model, head)


def has_critic(net: nnx.Module) -> bool:
  return hasattr(net, "value")


def score(graphdef: nnx.GraphDef, params, frozen, rest, batch, *, temperature: float,
          entropy: bool = False):
  """(token log-probs [M, L] of the output tokens at `temperature`, values [M], or None
  without a critic) and, with `entropy`, the per-token entropies [M, L]: one forward over
  [prompt; output]."""
  net = nnx.merge(graphdef, params, frozen, rest)
  mask = batch["attention_mask"]
  length = batch["output_ids"].shape[1]
  inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
  out = net.model(batch["input_ids"], positions=jnp.maximum(jnp.cumsum(mask, 1) - 1, 0),
                  return_hidden=True, logits_to_keep=length + 1, **inputs)
  logits = out.logits[:, :-1].astype(jnp.float32) / (temperature or 1.0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  token_logp = jnp.take_along_axis(log_probs, batch["output_ids"][..., None], -1)[..., 0]
  value = (net.value(out.hidden[:, -(length + 1)].astype(jnp.float32)) if has_critic(net)
           else None)
  if not entropy:
    return token_logp, value
  return token_logp, value, -(jnp.exp(log_probs) * log_probs).sum(-1)


def score_fn(graphdef: nnx.GraphDef, state: TrainState, cfg: ppo.PPOConfig, temperature: float):
  """`score_fn(params, minibatch)` for `ppo.ppo_update`, closing over the frozen parts."""
  def fn(params, batch):
    return score(graphdef, params, state.frozen, state.rest, batch, temperature=temperature,
                 entropy=cfg.entropy_coef > 0)
  return fn


def rescore_fields(images: bool) -> tuple[str, ...]:
  """The batch fields the scoring passes read."""
  return ("input_ids", "attention_mask", "output_ids", "thought_mask", "action_mask",
          "constant_logp") + (IMAGE_KEYS if images else ())


def update_fields(images: bool, *, critic: bool, kl: bool, token_level: bool
                  ) -> tuple[str, ...]:
  """The batch fields an update reads (rows; the returns' [T, B] arrays stay on host)."""
  return rescore_fields(images) + ("valid", "advantages") + (
      ("old_token_logp",) if token_level else ("old_logp",)) + (
      ("old_value", "returns") if critic else ()) + (("ref_token_logp",) if kl else ())


def rescore(graphdef: nnx.GraphDef, params, frozen, rest, batch: RolloutBatch, *,
            temperature: float, thought_coef: float) -> dict:
  """The rollout's no-grad pass: old sequence log-prob, token log-probs (the KL's reference
  when the parameters are the reference model's) and, with a critic, the value of each row's
  prompt (for a row without output tokens: the bootstrap value of that state)."""
  token_logp, value = score(graphdef, params, frozen, rest, batch, temperature=temperature)
  seq_logp, _ = ppo.sequence_logprob(token_logp, batch["thought_mask"], batch["action_mask"],
                                     batch["constant_logp"], thought_coef)
  out = {"old_logp": seq_logp, "token_logp": token_logp}
  if value is not None:
    out["old_value"] = value
  return out


class RowScorer:
  """The no-grad scoring pass over this process's rows, run as one global batch over every
  process's rows (the same number on each) and read back per process, `chunk` rows at a time
  (bounded activation memory). `rescore_step` is the jitted pass (`steps.rl`); single-process
  runs are the same code: the global batch is the local one."""

  def __init__(self, rescore_step, mesh: jax.sharding.Mesh, rules, chunk: int):
    self.rescore_step, self.mesh, self.rules, self.chunk = rescore_step, mesh, tuple(rules), chunk

  def __call__(self, state: TrainState, batch: RolloutBatch, params=None) -> dict:
    """Host arrays of this process's rows; `params` defaults to the state's trained ones (the
    frozen reference model passes its own)."""
    params = state.params if params is None else params
    batch = batch.only(rescore_fields(batch.has_images))
    # Pad each chunk (with copies of its first row) to what this process's batch shards split.
    multiple = max(1, parallel.batch_shards(self.mesh, self.rules) // jax.process_count())
    parts = []
    for start in range(0, batch.rows, self.chunk):
      rows = batch.take(slice(start, start + self.chunk))
      placed = rows.pad_rows(multiple).to_global(self.mesh, self.rules)
      out = self.rescore_step(params, state.frozen, state.rest, placed)
      parts.append({k: parallel.process_local_data(v)[:rows.rows] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def update(state: TrainState, batch: RolloutBatch, key, *, graphdef: nnx.GraphDef,
           tx: optax.GradientTransformation, cfg: ppo.PPOConfig, temperature: float,
           shards: int = 1) -> tuple[TrainState, dict[str, Any]]:
  """One update of the state on the batch's rows with the loss `cfg.loss` names
  (`ppo.ppo_update`'s epochs and micro-batches; `shards`: the data shards its micro-batches
  are drawn evenly from)."""
  params, opt_state, metrics = ppo.ppo_update(
      state.params, state.opt_state, batch, key,
      score_fn=score_fn(graphdef, state, cfg, temperature), tx=tx, cfg=cfg, shards=shards,
      loss_fn=token_loss.LOSSES[cfg.loss])
  steps = cfg.ppo_epochs * cfg.minibatches
  return state.replace(step=state.step + steps, params=params, opt_state=opt_state), metrics
