"""Building blocks shared by the text decoder and the vision tower: parameters with logical
axis names, dense layers, norms, RoPE with Llama-3 scaling, the SwiGLU MLP, attention, and
the scan-over-layers driver with named remat policies.

Every parameter is an `nnx.Param` whose `logical_axes` metadata names its dimensions
(`embed`, `heads`, `mlp`, ...); `jaxrl_gen.parallel` maps those names to the mesh. Layers
that are scanned are built with `stack=(repeats,)`: their parameters get a leading `layers`
dimension, and `scan_stack` runs the module once per slice.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_gen.models.config import RopeScaling

Axes = tuple[str | None, ...]
NEG_INF = float(np.finfo(np.float32).min)  # what transformers adds for masked scores


def normal(stddev: float = 0.02):
  return nnx.initializers.normal(stddev)


def zeros(key, shape, dtype):
  del key
  return jnp.zeros(shape, dtype)


def ones(key, shape, dtype):
  del key
  return jnp.ones(shape, dtype)


def constant(value: float):
  return lambda key, shape, dtype: jnp.full(shape, value, dtype)


def make_param(rngs: nnx.Rngs, init: Callable, shape: Sequence[int], axes: Axes, dtype,
               stack: tuple[int, ...] = ()) -> nnx.Param:
  """An `nnx.Param` of `stack + shape` whose metadata names every dimension."""
  assert len(shape) == len(axes), (shape, axes)
  full = tuple(stack) + tuple(shape)
  axes = ("layers",) * len(stack) + tuple(axes)
  return nnx.Param(init(rngs.params(), full, dtype), logical_axes=axes)


class Dense(nnx.Module):
  """x[..., *in_shape] @ kernel[*in_shape, *out_shape] (+ bias[*out_shape])."""

  def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], in_axes: Axes,
               out_axes: Axes, *, rngs: nnx.Rngs, dtype, param_dtype, use_bias: bool = False,
               stack: tuple[int, ...] = (), init: Callable | None = None):
    self.n_in = len(in_shape)
    self.dtype = dtype
    self.kernel = make_param(rngs, init or normal(), (*in_shape, *out_shape),
                             (*in_axes, *out_axes), param_dtype, stack)
    self.bias = (make_param(rngs, zeros, tuple(out_shape), tuple(out_axes), param_dtype, stack)
                 if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.tensordot(x.astype(self.dtype), self.kernel[...].astype(self.dtype), axes=self.n_in)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class Embed(nnx.Module):
  """A (num_embeddings, dim) lookup table; `attend` reuses it as a tied output layer."""

  def __init__(self, num: int, dim: int, *, rngs: nnx.Rngs, dtype, param_dtype):
    self.dtype = dtype
    self.embedding = make_param(rngs, normal(), (num, dim), ("vocab", "embed"), param_dtype)

  def __call__(self, ids: jax.Array) -> jax.Array:
    table = self.embedding[...]
    if not jax.sharding.get_abstract_mesh().empty:
      # Gather the (FSDP-sharded) table first, as for any weight before use: GSPMD cannot
      # reshard a gather from a sharded table to batch-sharded rows efficiently.
      table = jax.lax.with_sharding_constraint(table, jax.sharding.PartitionSpec())
    return jnp.take(table, ids, axis=0).astype(self.dtype)

  def attend(self, x: jax.Array, num: int) -> jax.Array:
    table = self.embedding[...][:num].astype(self.dtype)
    return jnp.einsum("...d,vd->...v", x, table, preferred_element_type=jnp.float32)


class RMSNorm(nnx.Module):
  """Llama's RMSNorm: normalise in fp32, cast back, then scale (the transformers order)."""

  def __init__(self, dim: int, eps: float, *, rngs: nnx.Rngs, dtype, param_dtype,
               stack: tuple[int, ...] = ()):
    self.eps, self.dtype = eps, dtype
    self.weight = make_param(rngs, ones, (dim,), ("norm",), param_dtype, stack)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return self.weight[...].astype(self.dtype) * x32.astype(self.dtype)


class LayerNorm(nnx.Module):
  """LayerNorm with scale and bias, computed in fp32."""

  def __init__(self, dim: int, eps: float, *, rngs: nnx.Rngs, dtype, param_dtype,
               stack: tuple[int, ...] = ()):
    self.eps, self.dtype = eps, dtype
    self.weight = make_param(rngs, ones, (dim,), ("norm",), param_dtype, stack)
    self.bias = make_param(rngs, zeros, (dim,), ("norm",), param_dtype, stack)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.weight[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
    return y.astype(self.dtype)


class SwiGLU(nnx.Module):
  """down(silu(gate(x)) * up(x))."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs, dtype, param_dtype,
               stack: tuple[int, ...] = ()):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, stack=stack)
    self.gate_proj = Dense((dim,), (hidden,), ("embed",), ("mlp",), **kw)
    self.up_proj = Dense((dim,), (hidden,), ("embed",), ("mlp",), **kw)
    self.down_proj = Dense((hidden,), (dim,), ("mlp",), ("embed",), **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


# --- rotary position embedding -------------------------------------------------------------


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> np.ndarray:
  """Inverse frequencies (head_dim // 2,), fp32, with Llama-3's band-wise scaling."""
  exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
  inv_freq = (np.float32(1.0) / (np.float32(theta) ** exponent)).astype(np.float32)
  if scaling is None:
    return inv_freq
  s = scaling
  low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
  high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  # Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
  scaled = np.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
  smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
      s.high_freq_factor - s.low_freq_factor)
  smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
  """Rotates x (B, S, heads, head_dim) by positions (B, S), rotate-half convention."""
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
  cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * cos + rotated * sin


# --- attention -----------------------------------------------------------------------------


def attend(q: jax.Array, k: jax.Array, v: jax.Array, allowed: jax.Array | None) -> jax.Array:
  """Grouped-query attention.

  q (B, S, H, D); k, v (B, L, KV, D) with H a multiple of KV (query head h reads kv head
  h // (H // KV)); `allowed` (B, S, L) bool or None. Scores and softmax in fp32; a row with
  nothing allowed averages every key, as transformers' additive-minimum mask does.
  """
  b, s, h, d = q.shape
  kv = k.shape[2]
  q = q.reshape(b, s, kv, h // kv, d)
  scores = jnp.einsum("bskgd,blkd->bkgsl", q, k, preferred_element_type=jnp.float32)
  scores = scores * (d ** -0.5)
  if allowed is not None:
    scores = jnp.where(allowed[:, None, None], scores, NEG_INF)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  out = jnp.einsum("bkgsl,blkd->bskgd", probs, v)
  return out.reshape(b, s, h, d)


# --- scanning over stacked layers ----------------------------------------------------------

_POLICIES: dict[str, Any] = {
    "full": None,  # save nothing: recompute the whole block
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_qkv": jax.checkpoint_policies.save_only_these_names("query", "key", "value"),
    "save_attn_mlp": jax.checkpoint_policies.save_only_these_names(
        "query", "key", "value", "attn_out", "mlp_out"),
}


def remat(fn: Callable, policy: str) -> Callable:
  """Wraps a scan body in `jax.checkpoint` with the named policy ('none': unchanged)."""
  if policy == "none":
    return fn
  return jax.checkpoint(fn, policy=_POLICIES[policy], prevent_cse=False)


def scan_stack(body: Callable, stacked: nnx.Module, carry: Any, xs: Any = None, *,
               scan: bool, policy: str, start: int = 0, stop: int | None = None):
  """Runs `body(module_i, carry, x_i) -> (carry, y_i)` over layers [start, stop) of a module
  built with a leading `layers` dimension; returns (carry, stacked ys) like `lax.scan`.

  `scan=False` unrolls the same computation (easier to profile, slower to compile).
  """
  graphdef, state = nnx.split(stacked)
  if start or stop is not None:
    state = jax.tree.map(lambda a: a[start:stop], state)

  def step(c, inputs):
    layer_state, x = inputs
    return body(nnx.merge(graphdef, layer_state), c, x)

  step = remat(step, policy)
  if scan:
    return jax.lax.scan(step, carry, (state, xs))
  n = jax.tree.leaves(state)[0].shape[0]
  ys = []
  for i in range(n):
    carry, y = step(carry, jax.tree.map(lambda a: a[i], (state, xs)))
    ys.append(y)
  return carry, jax.tree.map(lambda *a: jnp.stack(a), *ys) if ys and ys[0] is not None else None
