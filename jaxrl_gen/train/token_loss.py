"""Token-level policy losses: the clipped surrogate per output token, for the GRPO family
(`grpo_clip`: no critic) and for PPO with a critic (`token_ppo`), beside the turn-level PPO
loss of `ppo.microbatch_loss` (`turn_ppo`, the reference's).

    loss, stats = LOSSES[cfg.loss](params, microbatch, score_fn, cfg)

Per scored output token t of row i, with r = exp(logp - old_logp) and the row's advantage A
(every token of a generation shares it):

    -min(r A, clip(r, 1 - clip, 1 + clip_high) A)  +  kl_coef * k3(pi, ref)

the asymmetric clip of DAPO (`clip_high` None: symmetric), the k3 KL to the frozen reference
model in the loss (unless `kl_in_reward`), aggregated as `loss_agg` says: 'token_mean' (every
scored token of the micro-batch alike; verl's and DAPO's), 'seq_mean_token_mean' (GRPO: each
sequence's mean, then the mean over sequences) or 'seq_mean_token_sum_norm' (Dr.GRPO: each
sequence's sum over the padded length L, a constant, so long and short outputs are not
reweighted).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jaxrl_gen.train import ppo

AGGREGATIONS = ppo.LOSS_AGGREGATIONS


def token_weights(mask, rows_ok, how: str):
  """[M, L] weights summing to 1 over the micro-batch's scored tokens (0 without any)."""
  mask = mask.astype(jnp.float32)
  rows = jnp.maximum(rows_ok.sum(), 1)
  if how == "token_mean":
    return mask / jnp.maximum(mask.sum(), 1.0)
  if how == "seq_mean_token_mean":
    return mask / jnp.maximum(mask.sum(-1, keepdims=True), 1.0) / rows
  if how == "seq_mean_token_sum_norm":
    return mask / mask.shape[-1] / rows
  raise ValueError(f"ppo.loss_agg={how!r}: must be one of {AGGREGATIONS}")


def clipped_token_loss(params, batch, score_fn: Callable, cfg: ppo.PPOConfig):
  """The token-level loss of one micro-batch and its metric sums (module docstring). Rows
  that are not `valid`, legacy rows too short to score, and rows with a non-finite scored
  log-prob (or value) contribute nothing. With `old_value` / `returns` in the batch and
  `value_coef` > 0 the critic's clipped value loss is added as in `ppo.microbatch_loss`."""
  scored = score_fn(params, batch)
  token_logp = scored[0].astype(jnp.float32)
  tokens = ((batch["thought_mask"] + batch["action_mask"]) > 0) & ~batch["constant_logp"][:, None]
  finite = jnp.all(jnp.isfinite(token_logp) | ~tokens, axis=-1)
  critic = scored[1] is not None and "returns" in batch
  value = scored[1].astype(jnp.float32) if critic else None
  if critic:
    finite &= jnp.isfinite(value)
  ok = batch["valid"] & finite
  mask = tokens & ok[:, None]
  size = ok.shape[0]

  old = batch["old_token_logp"]
  log_ratio = jnp.where(mask, token_logp - old, 0.0)  # masked tokens: ratio 1, no gradient
  ratio = jnp.exp(log_ratio)
  advantage = batch["advantages"][:, None]
  high = cfg.clip if cfg.clip_high is None else cfg.clip_high
  clipped = jnp.clip(ratio, 1.0 - cfg.clip, 1.0 + high) * advantage
  terms = -jnp.minimum(ratio * advantage, clipped)
  weights = token_weights(mask, ok, cfg.loss_agg)
  policy_loss = jnp.sum(jnp.where(mask, weights * terms, 0.0))
  loss = policy_loss
  samples = ok.sum()
  count = jnp.maximum(mask.sum(), 1)
  stats = {"policy_loss": policy_loss * samples, "samples": samples,
           "skipped": (batch["valid"] & ~ok).sum(),
           "clip_fraction": jnp.where(mask, (ratio < 1.0 - cfg.clip) | (ratio > 1.0 + high),
                                      False).sum() / count * samples,
           "approx_kl": jnp.where(mask, ratio - 1.0 - log_ratio, 0.0).sum() / count * samples,
           "ratio_max": jnp.where(mask, ratio, 0.0).max(),
           "ratio_rule_used": jnp.int32(0)}
  if cfg.kl_coef and not cfg.kl_in_reward:
    diff = jnp.where(mask, batch["ref_token_logp"] - token_logp, 0.0)
    kl = jnp.sum(weights * (jnp.exp(diff) - diff - 1.0))
    loss += cfg.kl_coef * kl
    stats["kl"] = kl * samples
  if critic and cfg.value_coef:
    old_value, returns = batch["old_value"], batch["returns"]
    value = jnp.where(ok, value, old_value)
    value_clipped = old_value + jnp.clip(value - old_value, -cfg.value_clip, cfg.value_clip)
    value_terms = 0.5 * jnp.maximum((value - returns) ** 2, (value_clipped - returns) ** 2)
    value_loss = jnp.where(ok, value_terms, 0.0).sum() / size
    loss += cfg.value_coef * value_loss
    stats["value_loss"] = value_loss * size
  if len(scored) > 2:
    entropy = jnp.sum(jnp.where(mask, weights * scored[2].astype(jnp.float32), 0.0))
    loss -= cfg.entropy_coef * entropy
    stats["entropy"] = entropy * samples
  elif cfg.entropy_coef:
    raise ValueError("ppo.entropy_coef > 0 needs score_fn to return token entropies")
  return loss, stats


# The losses by name (`ppo.loss`).
LOSSES = {"turn_ppo": ppo.microbatch_loss, "token_ppo": clipped_token_loss,
          "grpo_clip": clipped_token_loss}
