"""Choosing the next token: greedy, or temperature sampling with top-k / top-p truncation,
and the log-prob PPO needs.

The order is transformers' (temperature, then top-k, then top-p on the renormalised top-k
distribution). Boundary ties are kept: top-k keeps every logit equal to the k-th largest
(as transformers does) and top-p keeps every token as probable as the least probable one
it needs. The reported log-prob is of the temperature-scaled distribution *before*
truncation, log_softmax(logits / T)[token] - what PPO's teacher-forced re-scoring computes;
greedy (T = 0) reports log_softmax(logits) (T = 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def keep_mask(scaled: jax.Array, top_k: int, top_p: float) -> jax.Array | None:
  """(B, V) bool of the tokens top-k / top-p leave in play; None when neither is set."""
  if top_k <= 0 and top_p >= 1.0:
    return None
  vocab = scaled.shape[-1]
  if 0 < top_k < vocab:
    candidates = jax.lax.top_k(scaled, top_k)[0]  # descending
  else:
    candidates = -jnp.sort(-scaled, axis=-1)
  cutoff = candidates[:, -1]
  if top_p < 1.0:
    probs = jax.nn.softmax(candidates, axis=-1)
    mass_above = jnp.cumsum(probs, axis=-1) - probs
    # A token stays while the more probable ones hold less than top_p (the first always).
    cutoff = jnp.min(jnp.where(mass_above < top_p, candidates, jnp.inf), axis=-1)
  return scaled >= cutoff[:, None]


def choose(logits: jax.Array, keys: jax.Array, *, temperature: float, top_k: int = 0,
           top_p: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Next tokens (B,) int32 and their log-probs (B,) fp32 from logits (B, V).

  keys (B,): one PRNG key per row, so a row's draw does not depend on its batch companions.
  """
  logits = logits.astype(jnp.float32)
  if temperature == 0:
    tokens = jnp.argmax(logits, axis=-1)
    logp = jax.nn.log_softmax(logits, axis=-1)
  else:
    scaled = logits / temperature
    logp = jax.nn.log_softmax(scaled, axis=-1)
    keep = keep_mask(scaled, top_k, top_p)
    if keep is not None:
      scaled = jnp.where(keep, scaled, -jnp.inf)
    tokens = jax.vmap(jax.random.categorical)(keys, scaled)
  tokens = tokens.astype(jnp.int32)
  return tokens, jnp.take_along_axis(logp, tokens[:, None], axis=-1)[:, 0]
