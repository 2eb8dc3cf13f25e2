"""Multi-turn PPO (`reference.md` §4) as pure JAX functions, in the order one update runs.

One transition is one generation (one env step, i.e. one verification attempt), and PPO
treats the whole generation as ONE action: its log-prob is the sequence log-prob

    log pi(answer) = thought_coef * sum(thought token log-probs) + sum(action token log-probs)

where the masks come from `action_span` (host side, per output). The learner never sees
strings; the model plugs in through

    score_fn(params, minibatch) -> (token_logp [M, L], value [M])           or
                                -> (token_logp [M, L], value [M], token_entropy [M, L])

the teacher-forced log-prob of every output token at the sampling temperature and the value
of the state before answering (the value head on the last prompt token's hidden state).

Buffer keys `ppo_update` reads (leading axis N = transitions; extra keys pass through to
`score_fn`): `old_logp` [N] (the sequence log-prob at rollout), `old_value` [N], `returns`
[N], `advantages` [N] (normalised), `thought_mask` / `action_mask` [N, L], `constant_logp`
[N] (legacy rule: too short to score), `valid` [N] (False for padding), and with `kl_coef`
`ref_token_logp` [N, L] (the frozen reference model's token log-probs).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# The legacy rule's stand-ins for outputs too short to split (no gradient flows through them).
SHORT_OUTPUT_LOGP = -2.0
SHORT_OUTPUT_ACTION_LOGP = -1.0
RATIO_RULE_THRESHOLD = 10.0  # "if any ratio in the batch > 10, use only the clipped term"
# The losses `ppo.loss` names (`token_loss.LOSSES`): the reference's turn-level PPO, and the
# token-level clipped surrogate with a critic (token_ppo) or without (grpo_clip).
LOSS_NAMES = ("turn_ppo", "token_ppo", "grpo_clip")
ADVANTAGES = ("gae", "grpo", "drgrpo", "rloo", "raw")  # `advantages.NAMES`
LOSS_AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """The learner's hyperparameters (`config.ppo`; `configs/gp.py` documents each)."""

  gamma: float = 0.9
  gae_lambda: float = 0.95
  bootstrap_truncated: bool = False
  clip: float = 0.1
  value_clip: float = 0.1
  value_coef: float = 0.5
  entropy_coef: float = 0.0
  kl_coef: float = 0.0
  kl_in_reward: bool = False
  thought_coef: float = 0.5
  ratio_rule: bool = True
  num_updates: int = 20
  ppo_epochs: int = 4
  minibatches: int = 2
  grad_accum: int = 128
  lr: float = 1e-6
  end_lr: float = 1e-9
  value_lr: float | None = None
  adam_eps: float = 1e-7
  max_grad_norm: float | None = None
  freeze: tuple[str, ...] = ()
  advantage: str = "gae"
  loss: str = "turn_ppo"
  clip_high: float | None = None
  loss_agg: str = "token_mean"

  def __post_init__(self):
    object.__setattr__(self, "freeze", tuple(self.freeze))
    for name in ("num_updates", "ppo_epochs", "minibatches", "grad_accum"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"ppo.{name}={value!r}: must be an integer >= 1")
    for name in ("gamma", "gae_lambda"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"ppo.{name}={getattr(self, name)!r}: must be in [0, 1]")
    for name in ("clip", "value_clip", "value_coef", "entropy_coef", "kl_coef", "thought_coef",
                 "end_lr", "adam_eps"):
      if getattr(self, name) < 0:
        raise ValueError(f"ppo.{name}={getattr(self, name)!r}: must be >= 0")
    if not self.lr > 0 or self.end_lr > self.lr:
      raise ValueError(f"ppo.lr={self.lr!r}, ppo.end_lr={self.end_lr!r}: need 0 < end_lr <= lr")
    if self.value_lr is not None and not self.value_lr > 0:
      raise ValueError(f"ppo.value_lr={self.value_lr!r}: must be > 0 or None (ppo.lr)")
    if self.max_grad_norm is not None and not self.max_grad_norm > 0:
      raise ValueError(f"ppo.max_grad_norm={self.max_grad_norm!r}: must be > 0 or None")
    if self.loss not in LOSS_NAMES:
      raise ValueError(f"ppo.loss={self.loss!r}: must be one of {LOSS_NAMES}")
    if self.loss_agg not in LOSS_AGGREGATIONS:
      raise ValueError(f"ppo.loss_agg={self.loss_agg!r}: must be one of {LOSS_AGGREGATIONS}")
    if self.advantage not in ADVANTAGES:
      raise ValueError(f"ppo.advantage={self.advantage!r}: must be one of {ADVANTAGES}")
    if (self.advantage == "gae") == (self.loss == "grpo_clip"):
      raise ValueError(f"ppo.loss={self.loss!r} with ppo.advantage={self.advantage!r}: gae "
                       "(a critic) goes with turn_ppo or token_ppo, the group estimators "
                       "(no critic) with grpo_clip")
    if self.clip_high is not None and not self.clip_high >= 0:
      raise ValueError(f"ppo.clip_high={self.clip_high!r}: must be >= 0 or None (ppo.clip)")
    for pattern in self.freeze:
      try:
        re.compile(pattern)
      except (re.error, TypeError) as e:
        raise ValueError(f"ppo.freeze: {pattern!r} is not a regular expression ({e})") from None

  @property
  def optimizer_steps(self) -> int:
    """Optimizer steps in the whole run: the cosine schedule's length."""
    return self.num_updates * self.ppo_epochs * self.minibatches

  @classmethod
  def from_config(cls, ppo_config) -> PPOConfig:
    """The fields of `config.ppo` this dataclass has (the rest are the rollout's)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(ppo_config).items() if k in names})


# --- Returns and advantages -----------------------------------------------------------------


def gae(rewards, values, terminated, truncated, next_value, *, gamma: float, gae_lambda: float,
        bootstrap_truncated: bool = False):
  """(advantages, returns) over a time-major buffer [T, ...] with a reverse `lax.scan`.

  An episode ends on `terminated or truncated`, and nothing bootstraps across its end
  (decisions.md row 6). `bootstrap_truncated=True` is the reference: only `terminated` cuts
  bootstrapping, so a truncated episode's last step bootstraps from the next episode's first
  value. `next_value` [...] is the value of the state after the buffer's last transition.
  """
  ends = terminated if bootstrap_truncated else jnp.logical_or(terminated, truncated)
  carry_on = 1.0 - ends.astype(jnp.float32)
  next_values = jnp.concatenate([values[1:], next_value[None]], axis=0)

  def backward(next_advantage, step):
    reward, value, next_v, cont = step
    delta = reward + gamma * next_v * cont - value
    advantage = delta + gamma * gae_lambda * cont * next_advantage
    return advantage, advantage

  _, advantages = jax.lax.scan(backward, jnp.zeros_like(next_value),
                               (rewards, values, next_values, carry_on), reverse=True)
  return advantages, advantages + values


def normalize(advantages, valid=None, eps: float = 1e-5):
  """(A - mean) / (std + eps) over the whole buffer, or over `valid` entries only. The std is
  the unbiased one (torch's `Tensor.std`, as the reference); invalid entries come back 0."""
  valid = jnp.ones(advantages.shape, bool) if valid is None else valid
  count = jnp.maximum(valid.sum(), 1)
  mean = jnp.where(valid, advantages, 0.0).sum() / count
  var = jnp.where(valid, (advantages - mean) ** 2, 0.0).sum() / jnp.maximum(count - 1, 1)
  return jnp.where(valid, (advantages - mean) / (jnp.sqrt(var) + eps), 0.0)


def compute_advantages(rewards, values, terminated, truncated, next_value, cfg: PPOConfig,
                       valid=None):
  """(normalised advantages, returns): `gae` with `cfg`'s gamma, lambda and boundary mode."""
  advantages, returns = gae(rewards, values, terminated, truncated, next_value, gamma=cfg.gamma,
                            gae_lambda=cfg.gae_lambda,
                            bootstrap_truncated=cfg.bootstrap_truncated)
  return normalize(advantages, valid), returns


def explained_variance(values, returns, valid=None):
  """1 - Var(R - V) / Var(R) over the (valid) entries: 1 is a perfect critic, <= 0 one no
  better than a constant (0 when the returns do not vary)."""
  valid = jnp.ones(returns.shape, bool) if valid is None else valid
  count = jnp.maximum(valid.sum(), 1)

  def variance(x):
    mean = jnp.where(valid, x, 0.0).sum() / count
    return jnp.where(valid, (x - mean) ** 2, 0.0).sum() / count

  var_returns = variance(returns)
  return jnp.where(var_returns > 0, 1.0 - variance(returns - values) / var_returns, 0.0)


# --- Sequence log-prob and losses -------------------------------------------------------------


def sequence_logprob(token_logp, thought_mask, action_mask, constant, thought_coef: float):
  """(sequence log-prob, action log-prob) [M] from per-token log-probs [M, L].

  Masked positions are read through `where`, so padding may hold anything (even NaN).
  `constant` marks outputs the legacy rule could not split: they get -2 / -1, no gradient.
  """
  def masked_sum(mask):
    return jnp.where(mask > 0, token_logp * mask, 0.0).sum(-1)

  action = masked_sum(action_mask)
  total = thought_coef * masked_sum(thought_mask) + action
  return (jnp.where(constant, SHORT_OUTPUT_LOGP, total),
          jnp.where(constant, SHORT_OUTPUT_ACTION_LOGP, action))


def k3_kl(token_logp, ref_token_logp, mask):
  """Per-sequence mean over `mask` of the k3 estimator of KL(pi || ref) per token:
  exp(ref - logp) - (ref - logp) - 1 (>= 0, unbiased at the sampled token)."""
  diff = jnp.where(mask, ref_token_logp - token_logp, 0.0)
  per_token = jnp.exp(diff) - diff - 1.0
  return per_token.sum(-1) / jnp.maximum(mask.sum(-1), 1)


def microbatch_loss(params, batch: dict, score_fn: Callable, cfg: PPOConfig):
  """The PPO loss of one microbatch (one forward/backward) and its metric sums.

  Samples that are not `valid`, or whose new log-prob or value is not finite (the reference
  skips those), contribute zero loss and zero gradient; the loss is still divided by the
  microbatch size, as a skipped sample still counts in the reference's accumulation.
  """
  scored = score_fn(params, batch)
  token_logp, value = scored[0].astype(jnp.float32), scored[1].astype(jnp.float32)
  scored_tokens = (batch["thought_mask"] + batch["action_mask"]) > 0
  new_logp, _ = sequence_logprob(token_logp, batch["thought_mask"], batch["action_mask"],
                                 batch["constant_logp"], cfg.thought_coef)
  ok = batch["valid"] & jnp.isfinite(new_logp) & jnp.isfinite(value)
  size = ok.shape[0]
  old_logp, old_value = batch["old_logp"], batch["old_value"]
  new_logp = jnp.where(ok, new_logp, old_logp)  # skipped samples: ratio 1, no gradient
  value = jnp.where(ok, value, old_value)

  log_ratio = new_logp - old_logp
  ratio = jnp.exp(log_ratio)
  advantage, returns = batch["advantages"], batch["returns"]
  surrogate = ratio * advantage
  clipped = jnp.clip(ratio, 1.0 - cfg.clip, 1.0 + cfg.clip) * advantage
  clipped_only = cfg.ratio_rule & jnp.any(ok & (ratio > RATIO_RULE_THRESHOLD))
  policy_terms = jnp.where(clipped_only, clipped, jnp.minimum(surrogate, clipped))
  policy_loss = -jnp.where(ok, policy_terms, 0.0).sum() / size

  value_clipped = old_value + jnp.clip(value - old_value, -cfg.value_clip, cfg.value_clip)
  value_terms = 0.5 * jnp.maximum((value - returns) ** 2, (value_clipped - returns) ** 2)
  value_loss = jnp.where(ok, value_terms, 0.0).sum() / size
  loss = policy_loss + cfg.value_coef * value_loss

  stats = {"policy_loss": policy_loss * size, "value_loss": value_loss * size,
           "samples": ok.sum(), "skipped": (batch["valid"] & ~ok).sum(),
           "clip_fraction": jnp.where(ok, jnp.abs(ratio - 1.0) > cfg.clip, False).sum(),
           "approx_kl": jnp.where(ok, ratio - 1.0 - log_ratio, 0.0).sum(),
           "ratio_max": jnp.where(ok, ratio, 0.0).max(),
           "ratio_rule_used": clipped_only.astype(jnp.int32)}
  if len(scored) > 2:  # the score function gave token entropies
    entropy = jnp.where(scored_tokens, scored[2].astype(jnp.float32), 0.0).sum(-1)
    mean_entropy = jnp.where(ok, entropy, 0.0).sum() / size
    loss -= cfg.entropy_coef * mean_entropy
    stats["entropy"] = mean_entropy * size
  elif cfg.entropy_coef:
    raise ValueError("ppo.entropy_coef > 0 needs score_fn to return token entropies")
  if cfg.kl_coef:
    kl = k3_kl(token_logp, batch["ref_token_logp"], scored_tokens)
    mean_kl = jnp.where(ok, kl, 0.0).sum() / size
    loss += cfg.kl_coef * mean_kl
    stats["kl"] = mean_kl * size
  return loss, stats


# --- Optimizer --------------------------------------------------------------------------------


def learning_rate(cfg: PPOConfig, peak: float | None = None) -> optax.Schedule:
  """Cosine decay from `lr` (or `peak`) to `end_lr / lr` of it over the run's optimizer steps
  (decisions.md row 8)."""
  return optax.cosine_decay_schedule(peak or cfg.lr, cfg.optimizer_steps,
                                     alpha=cfg.end_lr / cfg.lr)


def path_name(path) -> str:
  """A parameter's path as 'a.b.0.kernel', the HF-style names the model's parameters carry
  (e.g. 'vision_model.' / 'multi_modal_projector.' prefixes); NNX's `.value` left out."""
  parts = []
  for entry in path:
    if isinstance(entry, jax.tree_util.GetAttrKey) and entry.name == "value":
      continue
    parts.append(str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry)))))
  return ".".join(parts)


def freeze_labels(params, freeze: Sequence[str]):
  """'frozen' for every parameter whose `path_name` matches one of the regexes `freeze`
  (`re.search`), else 'trainable'. Leaving frozen parameters out of `params` altogether
  (`nnx.split` with a path filter, closed over by `score_fn`) also skips their gradients."""
  patterns = [re.compile(p) for p in freeze]
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "frozen" if any(p.search(path_name(path)) for p in patterns)
      else "trainable", params)


def value_labels(params):
  """'value' for the value head's parameters (paths 'value.*'), else 'policy'."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "value" if path_name(path).startswith("value.") else "policy", params)


def make_optimizer(cfg: PPOConfig, params=None) -> optax.GradientTransformation:
  """Adam (eps `adam_eps`, no weight decay) on the cosine schedule, after optional
  global-norm clipping of the trainable gradients; with `value_lr`, the value head has its
  own Adam on that peak (the same cosine shape); parameters matching `cfg.freeze` never
  move (labelling them needs `params`, or any pytree of the same structure)."""
  parts = [] if cfg.max_grad_norm is None else [optax.clip_by_global_norm(cfg.max_grad_norm)]
  adam = optax.adam(learning_rate(cfg), eps=cfg.adam_eps)
  if cfg.value_lr is not None:
    adam = optax.multi_transform(
        {"policy": adam,
         "value": optax.adam(learning_rate(cfg, cfg.value_lr), eps=cfg.adam_eps)},
        value_labels)
  tx = optax.chain(*parts, adam)
  if not cfg.freeze:
    return tx
  if params is None:
    raise ValueError("make_optimizer: ppo.freeze needs `params` to label")
  return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()},
                               freeze_labels(params, cfg.freeze))


# --- The update -------------------------------------------------------------------------------


def _summarize(stats: dict) -> dict:
  count = jnp.maximum(stats["samples"].sum(), 1)
  out = {k: v.sum() / count for k, v in stats.items()
         if k not in ("samples", "skipped", "ratio_max", "ratio_rule_used", "grad_norm")}
  out.update(samples=stats["samples"].sum(), skipped=stats["skipped"].sum(),
             ratio_max=stats["ratio_max"].max(), ratio_rule_used=stats["ratio_rule_used"].sum(),
             grad_norm=stats["grad_norm"].mean())
  return out


def shuffled_rows(key, size: int, steps: int, shards: int = 1) -> jax.Array:
  """[steps, shards, size / shards / steps] row indices of one pass over a buffer of `size`
  rows: a fresh order within each of `shards` equal blocks of rows (the data shards of a
  row-sharded buffer), every micro-batch taking the same number of rows from each block, so
  it stays spread over the data shards and no row crosses a shard. One block: a permutation
  of all rows cut in order (the reference's shuffle)."""
  block = size // shards
  if shards == 1:
    orders = jax.random.permutation(key, size)[None]
  else:
    orders = jax.vmap(lambda k: jax.random.permutation(k, block))(jax.random.split(key, shards))
  return jnp.swapaxes(orders.reshape(shards, steps, block // steps), 0, 1)


def take_rows(batch: dict, rows: jax.Array) -> dict:
  """The micro-batch of `rows` ([shards, n] indices within each block, `shuffled_rows`): a
  gather per block, never a permuted copy of the whole buffer."""
  shards = rows.shape[0]

  def one(x):
    blocks = x.reshape(shards, x.shape[0] // shards, *x.shape[1:])
    picked = jax.vmap(lambda block, idx: block[idx])(blocks, rows)
    return picked.reshape(-1, *x.shape[1:])
  return jax.tree.map(one, batch)


def ppo_update(params, opt_state, batch, key, *, score_fn: Callable,
               tx: optax.GradientTransformation, cfg: PPOConfig, shards: int = 1,
               loss_fn: Callable | None = None):
  """`ppo_epochs` passes over the buffer; each pass shuffles it into `minibatches` optimizer
  steps of `grad_accum` microbatches whose gradients are averaged. Pure: jit it with
  `functools.partial(ppo_update, score_fn=..., tx=..., cfg=...)`.

  The shuffle draws row indices (`shuffled_rows`) and each microbatch gathers its rows; with
  `shards` > 1 (the buffer's data shards) every microbatch takes its rows evenly from each
  shard's block, so it is spread over the data shards like the buffer. `shards` must divide
  the microbatch size (1 reproduces the reference's shuffle over all rows).

  `loss_fn(params, microbatch, score_fn, cfg) -> (loss, stat sums)` is `microbatch_loss`
  unless given (`token_loss.LOSSES`).

  Returns (params, opt_state, metrics): per-sample means of the losses, clip fraction and
  approximate KL (k3 of the ratio) over the scored samples, the largest ratio, the number of
  skipped samples and of microbatches where the ratio rule applied, the mean norm of the
  accumulated gradients (all parameters, before clipping), and the critic's explained
  variance on the buffer (rollout values against returns; with a critic).
  """
  size = jax.tree.leaves(batch)[0].shape[0]
  steps = cfg.minibatches * cfg.grad_accum
  if size % steps:
    raise ValueError(f"buffer of {size} transitions does not split into ppo.minibatches="
                     f"{cfg.minibatches} x ppo.grad_accum={cfg.grad_accum} microbatches")
  if (size // steps) % shards:
    raise ValueError(f"microbatches of {size // steps} rows do not split over {shards} shards")
  grad_fn = jax.grad(loss_fn or microbatch_loss, has_aux=True)

  def optimizer_step(carry, minibatch_rows):
    params, opt_state = carry

    def accumulate(grads, rows):
      new, stats = grad_fn(params, take_rows(batch, rows), score_fn, cfg)
      return jax.tree.map(jnp.add, grads, new), stats

    grads, stats = jax.lax.scan(accumulate, jax.tree.map(jnp.zeros_like, params),
                                minibatch_rows)
    grads = jax.tree.map(lambda g: g / cfg.grad_accum, grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    stats = dict(stats, grad_norm=optax.tree.norm(grads))
    return (optax.apply_updates(params, updates), opt_state), stats

  def epoch(carry, epoch_key):
    rows = shuffled_rows(epoch_key, size, steps, shards)
    rows = rows.reshape(cfg.minibatches, cfg.grad_accum, *rows.shape[1:])
    return jax.lax.scan(optimizer_step, carry, rows)

  (params, opt_state), stats = jax.lax.scan(epoch, (params, opt_state),
                                            jax.random.split(key, cfg.ppo_epochs))
  metrics = _summarize(stats)
  if "returns" in batch:
    metrics["explained_variance"] = explained_variance(batch["old_value"], batch["returns"],
                                                       batch["valid"])
  return params, opt_state, metrics


# --- Value head -------------------------------------------------------------------------------


class ValueHead(nnx.Module):
  """The critic on the shared backbone: hidden -> 1024 -> ReLU -> 512 -> ReLU -> 1, read at
  the last prompt token (V of the state before answering). Flax's default initialisers."""

  def __init__(self, in_features: int, hidden: Sequence[int] = (1024, 512), *, rngs: nnx.Rngs,
               dtype: Any = None, param_dtype: Any = jnp.float32):
    sizes = (in_features, *hidden)
    linear = functools.partial(nnx.Linear, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.layers = nnx.List([linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
    self.out = linear(sizes[-1], 1)

  def __call__(self, hidden: jax.Array) -> jax.Array:
    for layer in self.layers:
      hidden = nnx.relu(layer(hidden))
    return self.out(hidden)[..., 0]
