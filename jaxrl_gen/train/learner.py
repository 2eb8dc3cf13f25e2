"""The model side of PPO: the actor-critic module, the teacher-forced scoring `ppo.ppo_update`
calls, the re-scoring pass after a rollout, and the jitted update.

The policy and the critic are one `ActorCritic` module (the Mllama `Model` and a `ValueHead`
on its last-prompt-token hidden state), trained as one `TrainState` (`state.py`): freezing is
by parameter path (`ppo.freeze` regexes, e.g. 'vision_model'), the frozen part never gets
gradients or optimizer state.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.models import mllama
from jaxrl_gen.train import loop, ppo
from jaxrl_gen.train.sft import MODEL_INPUTS
from jaxrl_gen.train.state import TrainState

# Buffer keys the scoring reads, and the logical axes they are sharded by (rows over data):
# the SFT batch's model inputs, and the output tokens in place of the loss mask.
SEQUENCE_AXES = {**{k: v for k, v in loop.BATCH_AXES.items() if k != "loss_mask"},
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


def _rows_constrained(tree: dict, rules) -> dict:
  """Outputs sharded by rows like the inputs, so each process can read back its own rows."""
  return {k: parallel.constrain(v, ("batch",) + (None,) * (v.ndim - 1), rules)
          for k, v in tree.items()}


@functools.partial(jax.jit, static_argnames=("graphdef", "temperature", "thought_coef", "rules"))
def rescore(graphdef: nnx.GraphDef, params, frozen, rest, batch: dict, *, temperature: float,
            thought_coef: float, rules=()) -> dict:
  """The rollout's no-grad pass: old sequence log-prob, value and token log-probs (the KL's
  reference when the parameters are the reference model's)."""
  token_logp, value = score(graphdef, params, frozen, rest, batch, temperature=temperature)
  seq_logp, _ = ppo.sequence_logprob(token_logp, batch["thought_mask"], batch["action_mask"],
                                     batch["constant_logp"], thought_coef)
  return _rows_constrained({"old_logp": seq_logp, "old_value": value, "token_logp": token_logp},
                           rules)


@functools.partial(jax.jit, static_argnames=("graphdef", "rules"))
def _value(graphdef: nnx.GraphDef, params, frozen, rest, hidden, rules=()):
  net = nnx.merge(graphdef, params, frozen, rest)
  return _rows_constrained({"value": net.value(hidden)}, rules)


class RowScorer:
  """The no-grad passes over this process's rows, run as one global batch over every
  process's rows (the same number on each) and read back per process.

  Single-process runs are the same code: the global batch is the local one."""

  def __init__(self, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh, rules):
    self.graphdef, self.mesh, self.rules = graphdef, mesh, tuple(rules)

  def _run(self, fn, rows: dict, axes: dict, *args, **kwargs) -> dict:
    # Pad the rows (with copies of the first) to what this process's batch shards split.
    n = len(next(iter(rows.values())))
    multiple = max(1, parallel.batch_shards(self.mesh, self.rules) // jax.process_count())
    pad = -n % multiple
    rows = {k: np.concatenate([v, np.repeat(v[:1], pad, 0)]) if pad else v
            for k, v in rows.items()}
    with jax.set_mesh(self.mesh):
      batch = parallel.global_batch(rows, self.mesh, self.rules, axes)
      out = fn(self.graphdef, *args, batch, rules=self.rules, **kwargs)
    return {k: parallel.process_local_data(v)[:n] for k, v in out.items()}

  def rescore(self, state: TrainState, buffer: dict, *, temperature: float, thought_coef: float,
              chunk: int, params=None) -> dict:
    """`rescore` over the buffer `chunk` rows at a time (bounded activation memory); host
    arrays of this process's rows. `params` defaults to the state's trained parameters."""
    params = state.params if params is None else params
    keys = [k for k in (*SEQUENCE_AXES, "thought_mask", "action_mask", "constant_logp")
            if k in buffer]
    axes = {k: ROW_AXES.get(k, ("batch",)) for k in keys}
    parts = []
    for start in range(0, len(buffer["input_ids"]), chunk):
      rows = {k: np.asarray(buffer[k][start:start + chunk]) for k in keys}
      parts.append(self._run(rescore, rows, axes, params, state.frozen, state.rest,
                             temperature=temperature, thought_coef=thought_coef))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def value(self, state: TrainState, hidden: np.ndarray) -> np.ndarray:
    """The value head on hidden states [B, hidden] (e.g. the bootstrap states')."""
    return self._run(lambda g, p, f, r, h, rules: _value(g, p, f, r, h["hidden"], rules),
                     {"hidden": np.asarray(hidden, np.float32)}, {"hidden": ("batch", None)},
                     state.params, state.frozen, state.rest)["value"]


def jit_update(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, cfg: ppo.PPOConfig,
               temperature: float):
  """`update(state, buffer, key) -> (state, metrics)`: one PPO update, jitted, the state
  donated."""
  def update(state: TrainState, buffer: dict, key) -> tuple[TrainState, dict[str, Any]]:
    params, opt_state, metrics = ppo.ppo_update(
        state.params, state.opt_state, buffer, key,
        score_fn=score_fn(graphdef, state, cfg, temperature), tx=tx, cfg=cfg)
    steps = cfg.ppo_epochs * cfg.minibatches
    return state.replace(step=state.step + steps, params=params, opt_state=opt_state), metrics

  return jax.jit(update, donate_argnums=0)
