"""Advantage estimators by name: GAE over a turn-major buffer (PPO's, with a critic), and the
group estimators of the GRPO family over the n samples of each prompt (no critic).

    advantages.compute("grpo", rewards)            # rewards [G, n] -> advantages [G, n]
    advantages.compute("gae", rewards, values=..., terminated=..., truncated=...,
                       next_value=..., gamma=0.9, gae_lambda=0.95)     # [T, B], normalised

Group estimators, for group g's rewards r_1..r_n (each the return of one whole episode):
  grpo    (r_i - mean r) / (std r + eps), std the unbiased one (DeepSeekMath; TRL's and
          verl's default); a group whose rewards are all equal gets 0.
  drgrpo  r_i - mean r (Dr.GRPO: no std normalisation; the length normalisation is the loss's
          `ppo.loss_agg`).
  rloo    r_i - mean_{j != i} r_j = n / (n - 1) (r_i - mean r), the leave-one-out baseline
          (0 for n = 1).
  raw     r_i as they are (e.g. the self-judged reward's group log-softmax, `rewards.py`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxrl_gen.train import ppo

GROUP = ("grpo", "drgrpo", "rloo", "raw")
NAMES = ("gae",) + GROUP
EPS = 1e-6


def _group(name: str, rewards: np.ndarray, eps: float) -> np.ndarray:
  r = np.asarray(rewards, np.float64)
  if r.ndim != 2:
    raise ValueError(f"advantages {name!r}: rewards must be [groups, n], got shape {r.shape}")
  n = r.shape[1]
  centred = r - r.mean(axis=1, keepdims=True)
  if name == "raw":
    out = r
  elif name == "drgrpo":
    out = centred
  elif name == "rloo":
    out = centred * (n / (n - 1)) if n > 1 else np.zeros_like(r)
  else:  # grpo
    std = r.std(axis=1, ddof=1, keepdims=True) if n > 1 else np.zeros((len(r), 1))
    out = np.where(std > 0, centred / (std + eps), 0.0)
  return out.astype(np.float32)


def gae(rewards, values, terminated, truncated, next_value, cfg: ppo.PPOConfig):
  """(normalised advantages, returns) [T, B] of a lock-step rollout (`ppo.compute_advantages`
  with `cfg`'s gamma, lambda and boundary mode)."""
  return ppo.compute_advantages(jnp.asarray(rewards, jnp.float32),
                                jnp.asarray(values, jnp.float32), jnp.asarray(terminated),
                                jnp.asarray(truncated), jnp.asarray(next_value, jnp.float32),
                                cfg)


def compute(name: str, rewards, *, eps: float = EPS, values=None, terminated=None,
            truncated=None, next_value=None, gamma: float = 0.9, gae_lambda: float = 0.95,
            bootstrap_truncated: bool = False) -> np.ndarray:
  """The advantages of estimator `name` (module docstring): group estimators on rewards
  [G, n]; 'gae' on a time-major buffer [T, B] with its values, episode flags and bootstrap
  value, normalised over the buffer as PPO uses them (`ppo.compute_advantages`)."""
  if name in GROUP:
    return _group(name, rewards, eps)
  if name != "gae":
    raise ValueError(f"unknown advantage estimator {name!r}; known: {', '.join(NAMES)}")
  cfg = ppo.PPOConfig(gamma=gamma, gae_lambda=gae_lambda, bootstrap_truncated=bootstrap_truncated)
  return np.asarray(gae(rewards, values, terminated, truncated, next_value, cfg)[0])
