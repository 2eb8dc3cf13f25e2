"""The compiled sampler: one program per bucket = prefill + a `lax.while_loop` of cached
one-token steps.

The self-attention cache is allocated inside the program (sized prompt bucket + token
bucket, sharded by its logical axes) and lives only in the loop carry, where XLA updates
it in place: no cache buffer exists between calls (the trainer gets that memory back), so
there is nothing to donate or to copy. Image K/V are computed once at prefill, stored in
the cache and read by every step. The loop stops when every live row has emitted an EOS
id or the (runtime) token budget is spent.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.models import mllama
from jaxrl_gen.models.inputs import IMAGE_KEYS
from jaxrl_gen.models.llama import KVCache
from jaxrl_gen.sampling import sample



@dataclasses.dataclass(frozen=True)
class Static:
  """Everything the program's trace depends on besides shapes (part of the compile key)."""
  new_tokens: int                 # the token buffer (a bucket >= the budget)
  temperature: float
  top_k: int
  top_p: float
  pad_id: int
  cache_dtype: str | None         # None: the model's compute dtype
  return_logits: bool
  unroll_decode: bool             # decode steps run the layers unrolled over per-layer weights


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Carry:
  t: jax.Array               # () tokens sampled so far
  last: jax.Array            # (B,) the token fed to the next step
  done: jax.Array            # (B,) the row emitted EOS (or is bucket padding)
  lengths: jax.Array         # (B,)
  tokens: jax.Array          # (B, N)
  logprobs: jax.Array        # (B, N)
  logits: jax.Array | None   # (B, N, V) with return_logits
  cache: KVCache


def _is_axes(x) -> bool:
  return isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)


def _constrain_cache(cache: KVCache, rules) -> KVCache:
  """Shards the fresh cache by its logical axes (batch over data x fsdp, kv heads over
  tensor) so the loop carry keeps that layout."""
  return jax.tree.map(lambda axes, x: parallel.constrain(x, axes, rules),
                      cache.logical_axes(), cache, is_leaf=_is_axes)


def _record(static: Static, eos: jax.Array, c: _Carry, tokens, logprobs, logits) -> _Carry:
  """Writes step t's choice for the rows still running; finished rows emit pad."""
  active = ~c.done
  tokens = jnp.where(active, tokens, static.pad_id)
  logprobs = jnp.where(active, logprobs, 0.0)
  hit = jnp.any(tokens[:, None] == eos[None, :], axis=-1)
  saved = c.logits
  if static.return_logits:
    saved = jax.lax.dynamic_update_index_in_dim(saved, logits, c.t, axis=1)
  return dataclasses.replace(
      c, t=c.t + 1, last=tokens, done=c.done | (active & hit),
      lengths=c.lengths + active.astype(jnp.int32),
      tokens=jax.lax.dynamic_update_index_in_dim(c.tokens, tokens, c.t, axis=1),
      logprobs=jax.lax.dynamic_update_index_in_dim(c.logprobs, logprobs, c.t, axis=1),
      logits=saved)


def _decode_model(static: Static, graphdef: nnx.GraphDef, state: nnx.State, model):
  """What the loop body calls to rebuild the model each step.

  With `unroll_decode`, the decoder's stacked weights are sliced per repeat once, before
  the loop, and re-stacked inside the body under an unrolled copy of the graph (same
  parameters, `scan_layers=False`): each layer's static slice of the re-stacked array folds
  back to its part, so a step reads every weight in place. A scanned (or unrolled) step over
  the stacks copies each layer's weights out first, which on CPU doubles a step's memory
  traffic; the price is one copy of the decoder weights per call.
  """
  repeats = model.language_model.repeats
  if not static.unroll_decode or repeats == 1:
    return state, lambda parts: nnx.merge(graphdef, parts)
  unrolled = mllama.abstract(model.config.replace(scan_layers=False))[0]
  leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
  stacked = [len(path) > 1 and getattr(path[0], "key", None) == "language_model" and
             getattr(path[1], "key", None) == "layers" for path, _ in leaves]
  parts = [tuple(x[i] for i in range(repeats)) if s else x
           for s, (_, x) in zip(stacked, leaves)]

  def rebuild(parts):
    return nnx.merge(unrolled, jax.tree_util.tree_unflatten(
        treedef, [jnp.stack(p) if s else p for s, p in zip(stacked, parts)]))
  return parts, rebuild


def program(static: Static, graphdef: nnx.GraphDef, state: nnx.State, batch: dict,
            budget: jax.Array, key: jax.Array) -> dict:
  """Samples up to `budget` tokens for each row of the left-padded batch.

  batch: ids (B, P), mask (B, P), live (B,) (False for bucket padding rows), row (B,) each
  row's index in the caller's prompts (over all processes: its draws' key), eos (E,) the
  EOS ids (-1 fills), and the model's image inputs (`IMAGE_KEYS`) when there are images.
  Returns tokens / logprobs (B, N), lengths, finished (B,), prompt_hidden (B, hidden) fp32
  and, with return_logits, the fp32 logits (B, N, V) of every step.
  """
  model = nnx.merge(graphdef, state)
  rules = model.config.rules
  ids, mask = batch["ids"], batch["mask"]
  b, p = ids.shape
  n = static.new_tokens
  cache = _constrain_cache(model.init_cache(b, p + n, static.cache_dtype), rules)
  images = {k: batch[k] for k in IMAGE_KEYS if k in batch}
  out = model(ids, attention_mask=mask, positions=jnp.maximum(jnp.cumsum(mask, 1) - 1, 0),
              cache=cache, return_hidden=True, logits_to_keep=1, **images)

  # Per-row streams: row i's step-t key is fold_in(fold_in(key, i), t), i its global index.
  row_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, batch["row"])

  def choose(logits, t):
    keys = jax.vmap(jax.random.fold_in, (0, None))(row_keys, t)
    return sample.choose(logits, keys, temperature=static.temperature, top_k=static.top_k,
                         top_p=static.top_p)

  vocab = out.logits.shape[-1]
  logits0 = out.logits[:, -1]
  carry = _Carry(
      t=jnp.zeros((), jnp.int32), last=jnp.zeros((b,), jnp.int32), done=~batch["live"],
      lengths=jnp.zeros((b,), jnp.int32), tokens=jnp.full((b, n), static.pad_id, jnp.int32),
      logprobs=jnp.zeros((b, n), jnp.float32),
      logits=jnp.zeros((b, n, vocab), jnp.float32) if static.return_logits else None,
      cache=out.cache)
  carry = _record(static, batch["eos"], carry, *choose(logits0, 0), logits0)

  def cond(c: _Carry):
    return (c.t < budget) & ~jnp.all(c.done)

  parts, rebuild = _decode_model(static, graphdef, state, model)

  def step(c: _Carry):
    step_out = rebuild(parts)(c.last[:, None], cache=c.cache)
    logits = step_out.logits[:, 0]
    c = dataclasses.replace(c, cache=step_out.cache)
    return _record(static, batch["eos"], c, *choose(logits, c.t), logits)

  carry = jax.lax.while_loop(cond, step, carry)
  result = dict(tokens=carry.tokens, logprobs=carry.logprobs, lengths=carry.lengths,
                finished=carry.done & batch["live"],
                prompt_hidden=out.hidden[:, -1].astype(jnp.float32))
  if static.return_logits:
    result["logits"] = carry.logits
  return result
