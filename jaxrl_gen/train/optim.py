"""The optimizer of `config.optim`: AdamW with the reference's SFT settings (`reference.md` §5).

AdamW (b1 0.9, b2 0.98, eps 1e-7, weight decay 0), cosine decay with linear warm-up over the
first `warmup_ratio` of the steps (the first `ceil(ratio * steps)` steps, as transformers'
`get_cosine_schedule_with_warmup`: 0 at step 0, the peak after the warm-up, `end_lr` at the end),
optional global-norm clipping. Weight decay, when set, skips norms, biases and gates, as
transformers' Trainer skips biases and LayerNorm weights. `moment_dtype` 'bfloat16' stores
Adam's two moments in bf16 (half the optimizer state; the update itself runs in fp32 on the
fp32 master weights).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxrl_gen.train.ppo import path_name

SCHEDULES = ("cosine", "constant")
_NO_DECAY = ("norm", "bias", "gate")


def schedule(optim: Any, total_steps: int) -> optax.Schedule:
  """The learning rate at each optimizer step."""
  if optim.schedule not in SCHEDULES:
    raise ValueError(f"config.optim.schedule={optim.schedule!r}: must be one of {SCHEDULES}")
  warmup = warmup_steps(optim.warmup_ratio, total_steps)
  if optim.schedule == "constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, optim.lr, warmup), optax.constant_schedule(optim.lr)],
        [warmup]) if warmup else optax.constant_schedule(optim.lr)
  end = optim.lr * optim.end_lr_ratio
  if not warmup:
    return optax.cosine_decay_schedule(optim.lr, max(total_steps, 1), alpha=optim.end_lr_ratio)
  return optax.warmup_cosine_decay_schedule(0.0, optim.lr, warmup, max(total_steps, warmup + 1),
                                            end_value=end)


def warmup_steps(ratio: float, total_steps: int) -> int:
  if not 0.0 <= ratio < 1.0:
    raise ValueError(f"config.optim.warmup_ratio={ratio}: must be in [0, 1)")
  return math.ceil(ratio * total_steps)


def decay_mask(params: Any) -> Any:
  """True for the parameters weight decay applies to (not norms, biases or gates)."""
  def one(path, _):
    name = path_name(path).lower()
    return not any(word in name for word in _NO_DECAY)
  return jax.tree_util.tree_map_with_path(one, params)


def moments_in(inner: optax.GradientTransformation, dtype) -> optax.GradientTransformation:
  """`inner` with its floating-point state (Adam's moments) stored in `dtype`: each update
  reads it back in fp32, updates, and stores it again (counts stay integers)."""
  def cast(tree, to):
    return jax.tree.map(
        lambda x: x.astype(to) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

  def init(params):
    return cast(inner.init(params), dtype)

  def update(updates, state, params=None):
    updates, state = inner.update(updates, cast(state, jnp.float32), params)
    return updates, cast(state, dtype)
  return optax.GradientTransformation(init, update)


def optimizer(optim: Any, total_steps: int) -> optax.GradientTransformation:
  """The gradient transformation: [clip] -> AdamW with the schedule, its moments in
  `optim.moment_dtype`."""
  if optim.max_grad_norm is not None and optim.max_grad_norm <= 0:
    raise ValueError(f"config.optim.max_grad_norm={optim.max_grad_norm}: must be > 0 or None")
  tx = optax.adamw(schedule(optim, total_steps), b1=optim.b1, b2=optim.b2, eps=optim.eps,
                   weight_decay=optim.weight_decay, mask=decay_mask)
  if optim.max_grad_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(optim.max_grad_norm), tx)
  moment_dtype = optim.get("moment_dtype", "float32")
  return tx if moment_dtype == "float32" else moments_in(tx, jnp.dtype(moment_dtype))
