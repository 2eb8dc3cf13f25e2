"""The model side of PPO: the actor-critic module, the teacher-forced scoring `ppo.ppo_update`
calls, the re-scoring pass after a rollout, and the update: pure functions that
`steps.rl` jits with the mesh's shardings.

The policy and the critic are one `ActorCritic` module (the Mllama `Model` and a `ValueHead`
on its last-prompt-token hidden state), trained as one `TrainState` (`state.py`): freezing is
by parameter path (`ppo.freeze` regexes, e.g. 'vision_model'), the frozen part never gets
gradients or optimizer state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.data.pipeline import IMAGE_KEYS
from jaxrl_gen.models import mllama
from jaxrl_gen.train import ppo
from jaxrl_gen.train.sft import BATCH_AXES, MODEL_INPUTS
from jaxrl_gen.train.state import TrainState

# Buffer keys the scoring reads, and the logical axes they are sharded by (rows over data):
# the SFT batch's model inputs, and the output tokens in place of the loss mask.
SEQUENCE_AXES = {**{k: v for k, v in BATCH_AXES.items() if k != "loss_mask"},
                 "output_ids": ("batch", None)}


class ActorCritic(nnx.Module):
  """The policy model and its value head (paths 'model.*' and 'value.*')."""

  def __init__(self, model: mllama.Model, value: ppo.ValueHead):
    self.model, self.value = model, value


def actor_critic(model: mllama.Model, value_hidden: tuple[int, ...], *, seed: int
                 ) -> ActorCritic:
  """`model` with a fresh value head (Flax's default initialisers, key `seed`)."""
  head = ppo.ValueHead(model.config.text.hidden_size, value_hidden, rngs=nnx.Rngs(seed),
                       param_dtype=model.config.param_dtype)
  return ActorCritic(model, head)


def score(graphdef: nnx.GraphDef, params, frozen, rest, batch: dict, *, temperature: float,
          entropy: bool = False):
  """(token log-probs [M, L] of the output tokens at `temperature`, values [M]) and, with
  `entropy`, the per-token entropies [M, L]: one forward over [prompt; output]."""
  net = nnx.merge(graphdef, params, frozen, rest)
  mask = batch["attention_mask"]
  length = batch["output_ids"].shape[1]
  inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
  out = net.model(batch["input_ids"], positions=jnp.maximum(jnp.cumsum(mask, 1) - 1, 0),
                  return_hidden=True, logits_to_keep=length + 1, **inputs)
  logits = out.logits[:, :-1].astype(jnp.float32) / (temperature or 1.0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  token_logp = jnp.take_along_axis(log_probs, batch["output_ids"][..., None], -1)[..., 0]
  value = net.value(out.hidden[:, -(length + 1)].astype(jnp.float32))
  if not entropy:
    return token_logp, value
  return token_logp, value, -(jnp.exp(log_probs) * log_probs).sum(-1)


def score_fn(graphdef: nnx.GraphDef, state: TrainState, cfg: ppo.PPOConfig, temperature: float):
  """`score_fn(params, minibatch)` for `ppo.ppo_update`, closing over the frozen parts."""
  def fn(params, batch):
    return score(graphdef, params, state.frozen, state.rest, batch, temperature=temperature,
                 entropy=cfg.entropy_coef > 0)
  return fn


# Every row array of a buffer and its logical axes (rows over the data shards).
ROW_AXES = {**SEQUENCE_AXES, "thought_mask": ("batch", None), "action_mask": ("batch", None),
            "ref_token_logp": ("batch", None)}


def rescore_keys(images: bool) -> tuple[str, ...]:
  """The buffer arrays the re-scoring pass reads."""
  return tuple(k for k in SEQUENCE_AXES if images or k not in IMAGE_KEYS) + (
      "thought_mask", "action_mask", "constant_logp")


def update_keys(images: bool, kl: bool) -> tuple[str, ...]:
  """The buffer arrays a PPO update reads (rows; the returns' [T, B] arrays stay on host)."""
  return rescore_keys(images) + ("valid", "old_logp", "old_value", "advantages", "returns") + (
      ("ref_token_logp",) if kl else ())


def row_axes(key: str) -> tuple[str | None, ...]:
  """A buffer array's logical axes: rows over the data shards (the rest whole unless named)."""
  return ROW_AXES.get(key, ("batch",))


def rescore(graphdef: nnx.GraphDef, params, frozen, rest, batch: dict, *, temperature: float,
            thought_coef: float) -> dict:
  """The rollout's no-grad pass: old sequence log-prob, value and token log-probs (the KL's
  reference when the parameters are the reference model's)."""
  token_logp, value = score(graphdef, params, frozen, rest, batch, temperature=temperature)
  seq_logp, _ = ppo.sequence_logprob(token_logp, batch["thought_mask"], batch["action_mask"],
                                     batch["constant_logp"], thought_coef)
  return {"old_logp": seq_logp, "old_value": value, "token_logp": token_logp}


def value(graphdef: nnx.GraphDef, params, frozen, rest, batch: dict) -> dict:
  """The value head on hidden states `batch['hidden']` [B, hidden] (the bootstrap states)."""
  return {"value": nnx.merge(graphdef, params, frozen, rest).value(batch["hidden"])}


class RowScorer:
  """The no-grad passes over this process's rows, run as one global batch over every
  process's rows (the same number on each) and read back per process.

  `rescore_step` / `value_step` are the jitted passes (`steps.rl`); single-process runs are
  the same code: the global batch is the local one."""

  def __init__(self, rescore_step, value_step, mesh: jax.sharding.Mesh, rules):
    self.rescore_step, self.value_step = rescore_step, value_step
    self.mesh, self.rules = mesh, tuple(rules)

  def _run(self, step, rows: dict, *args) -> dict:
    # Pad the rows (with copies of the first) to what this process's batch shards split.
    n = len(next(iter(rows.values())))
    multiple = max(1, parallel.batch_shards(self.mesh, self.rules) // jax.process_count())
    pad = -n % multiple
    rows = {k: np.concatenate([v, np.repeat(v[:1], pad, 0)]) if pad else v
            for k, v in rows.items()}
    axes = {k: row_axes(k) for k in rows}
    batch = parallel.global_batch(rows, self.mesh, self.rules, axes)
    out = step(*args, batch)
    return {k: parallel.process_local_data(v)[:n] for k, v in out.items()}

  def rescore(self, state: TrainState, buffer: dict, *, chunk: int, params=None) -> dict:
    """The re-scoring pass over the buffer `chunk` rows at a time (bounded activation memory);
    host arrays of this process's rows. `params` defaults to the state's trained parameters."""
    params = state.params if params is None else params
    keys = rescore_keys("pixel_values" in buffer)
    parts = []
    for start in range(0, len(buffer["input_ids"]), chunk):
      rows = {k: np.asarray(buffer[k][start:start + chunk]) for k in keys}
      parts.append(self._run(self.rescore_step, rows, params, state.frozen, state.rest))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def value(self, state: TrainState, hidden: np.ndarray) -> np.ndarray:
    """The value head on hidden states [B, hidden] (e.g. the bootstrap states')."""
    return self._run(self.value_step, {"hidden": np.asarray(hidden, np.float32)},
                     state.params, state.frozen, state.rest)["value"]


def update(state: TrainState, buffer: dict, key, *, graphdef: nnx.GraphDef,
           tx: optax.GradientTransformation, cfg: ppo.PPOConfig, temperature: float,
           shards: int = 1) -> tuple[TrainState, dict[str, Any]]:
  """One PPO update of the state on the buffer's rows (`ppo.ppo_update`; `shards`: the data
  shards its micro-batches are drawn evenly from)."""
  params, opt_state, metrics = ppo.ppo_update(
      state.params, state.opt_state, buffer, key,
      score_fn=score_fn(graphdef, state, cfg, temperature), tx=tx, cfg=cfg, shards=shards)
  steps = cfg.ppo_epochs * cfg.minibatches
  return state.replace(step=state.step + steps, params=params, opt_state=opt_state), metrics
