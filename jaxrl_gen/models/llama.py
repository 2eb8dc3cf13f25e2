"""The Llama-3 text decoder with Mllama's gated cross-attention layers, and its KV cache.

The decoder is `repeats` copies of a block of layer kinds (`TextConfig.layer_pattern`): for
Llama-3.2-11B-Vision 8 x [self, self, self, cross, self], for a text-only Llama N x [self].
Each position in the block is one stacked module (`layers[j]`, leading dim = repeats), so HF
layer `i` is `layers[i % period]` at repeat `i // period`.

Cache: self-attention K/V preallocated to `max_length` slots, written at a shared `index`
(prompts are left-padded, so every row writes the same slot), a per-slot `valid` mask and a
per-row next RoPE position; cross-attention K/V are computed once from the image states.
Cached keys are stored (B, KV, D, L) and values (B, KV, L, D) per layer: the layouts the
decode step's q.k and p.v matmuls read in place (row-major (B, L, KV, D) costs a transpose
of the whole cache per layer and step).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from jaxrl_gen import parallel
from jaxrl_gen.models import layers
from jaxrl_gen.models.config import ModelConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
  """Decoder state between calls; a pytree, updated functionally (donate it under jit)."""
  keys: tuple[jax.Array, ...]            # per self-attention block slot: (R, B, KV, D, L)
  values: tuple[jax.Array, ...]          # (R, B, KV, L, D)
  valid: jax.Array                       # (B, L) bool: the slot holds a real token
  index: jax.Array                       # () int32: the next slot to write
  next_position: jax.Array               # (B,) int32: RoPE position of the next token
  cross_keys: tuple[jax.Array, ...] | None = None    # per cross slot: (R, B, KV, D, N_vision)
  cross_values: tuple[jax.Array, ...] | None = None  # (R, B, KV, N_vision, D)
  cross_mask: jax.Array | None = None    # (B, images, tiles): the last cross_attention_mask row

  @property
  def max_length(self) -> int:
    return self.valid.shape[1]

  @property
  def has_cross(self) -> bool:
    return self.cross_keys is not None

  def logical_axes(self) -> KVCache:
    """The same tree with each array's logical axis names (for `parallel.logical_shardings`)."""
    k = ("layers", "batch", "act_kv_heads", "head_dim", "length")
    v = ("layers", "batch", "act_kv_heads", "length", "head_dim")
    per = lambda t, axes: None if t is None else tuple(axes for _ in t)  # noqa: E731
    return KVCache(keys=per(self.keys, k), values=per(self.values, v), valid=("batch", "length"),
                   index=(), next_position=("batch",), cross_keys=per(self.cross_keys, k),
                   cross_values=per(self.cross_values, v),
                   cross_mask=None if self.cross_mask is None else ("batch", None, None))


class SelfAttention(nnx.Module):

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, stack: tuple[int, ...]):
    t = config.text
    kw = dict(rngs=rngs, dtype=config.dtype, param_dtype=config.param_dtype, stack=stack)
    self.q_proj = layers.Dense((t.hidden_size,), (t.num_heads, t.head_dim), ("embed",),
                               ("heads", "head_dim"), **kw)
    self.k_proj = layers.Dense((t.hidden_size,), (t.num_kv_heads, t.head_dim), ("embed",),
                               ("kv_heads", "head_dim"), **kw)
    self.v_proj = layers.Dense((t.hidden_size,), (t.num_kv_heads, t.head_dim), ("embed",),
                               ("kv_heads", "head_dim"), **kw)
    self.o_proj = layers.Dense((t.num_heads, t.head_dim), (t.hidden_size,),
                               ("heads", "head_dim"), ("embed",), **kw)

  def qkv(self, x, positions, inv_freq):
    q = layers.apply_rope(self.q_proj(x), positions, inv_freq)
    k = layers.apply_rope(self.k_proj(x), positions, inv_freq)
    v = self.v_proj(x)
    return checkpoint_name(q, "query"), checkpoint_name(k, "key"), checkpoint_name(v, "value")


class CrossAttention(nnx.Module):
  """Text queries over image keys/values; q and k get their own RMSNorm, no RoPE."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, stack: tuple[int, ...]):
    t = config.text
    kw = dict(rngs=rngs, dtype=config.dtype, param_dtype=config.param_dtype, stack=stack)
    self.q_proj = layers.Dense((t.hidden_size,), (t.num_heads, t.head_dim), ("embed",),
                               ("heads", "head_dim"), **kw)
    self.k_proj = layers.Dense((t.hidden_size,), (t.num_kv_heads, t.head_dim), ("embed",),
                               ("kv_heads", "head_dim"), **kw)
    self.v_proj = layers.Dense((t.hidden_size,), (t.num_kv_heads, t.head_dim), ("embed",),
                               ("kv_heads", "head_dim"), **kw)
    self.o_proj = layers.Dense((t.num_heads, t.head_dim), (t.hidden_size,),
                               ("heads", "head_dim"), ("embed",), **kw)
    self.q_norm = layers.RMSNorm(t.head_dim, t.rms_norm_eps, **kw)
    self.k_norm = layers.RMSNorm(t.head_dim, t.rms_norm_eps, **kw)

  def kv(self, cross_states):
    return self.k_norm(self.k_proj(cross_states)), self.v_proj(cross_states)


class SelfAttentionLayer(nnx.Module):
  """Pre-norm self-attention + SwiGLU, residual around each."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, stack: tuple[int, ...]):
    t = config.text
    kw = dict(rngs=rngs, dtype=config.dtype, param_dtype=config.param_dtype, stack=stack)
    self.input_layernorm = layers.RMSNorm(t.hidden_size, t.rms_norm_eps, **kw)
    self.self_attn = SelfAttention(config, rngs=rngs, stack=stack)
    self.post_attention_layernorm = layers.RMSNorm(t.hidden_size, t.rms_norm_eps, **kw)
    self.mlp = layers.SwiGLU(t.hidden_size, t.intermediate_size, **kw)


class CrossAttentionLayer(nnx.Module):
  """Mllama's gated block: h += tanh(g_attn) * xattn(h); h += tanh(g_mlp) * row_mask * mlp(h)."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, stack: tuple[int, ...]):
    t = config.text
    kw = dict(rngs=rngs, dtype=config.dtype, param_dtype=config.param_dtype, stack=stack)
    self.input_layernorm = layers.RMSNorm(t.hidden_size, t.rms_norm_eps, **kw)
    self.cross_attn = CrossAttention(config, rngs=rngs, stack=stack)
    gate = layers.constant(t.cross_attention_gate_init)
    self.cross_attn_attn_gate = layers.make_param(rngs, gate, (1,), (None,),
                                                  config.param_dtype, stack)
    self.post_attention_layernorm = layers.RMSNorm(t.hidden_size, t.rms_norm_eps, **kw)
    self.mlp = layers.SwiGLU(t.hidden_size, t.intermediate_size, **kw)
    self.cross_attn_mlp_gate = layers.make_param(rngs, gate, (1,), (None,),
                                                 config.param_dtype, stack)


# (B, L, KV, D) -> the stored per-layer layout of cached keys and of cached values.
KEY_LAYOUT, VALUE_LAYOUT = (0, 2, 3, 1), (0, 2, 1, 3)


def stored(x: jax.Array, layout: tuple[int, ...]) -> jax.Array:
  return jnp.transpose(x, layout)


def unstored(x: jax.Array, layout: tuple[int, ...]) -> jax.Array:
  """A stored layer back to (B, L, KV, D); XLA folds this transpose into the matmul."""
  return jnp.transpose(x, tuple(layout.index(i) for i in range(4)))


def _write(stacks: tuple[jax.Array, ...], n: int, new: jax.Array, r, index, layout):
  """Writes `new` (B, S, KV, D) into cached stack n at repeat r, slots index.. ; returns the
  updated stacks and that layer's whole cache (B, L, KV, D) in `new`'s dtype."""
  start = (r,) + tuple(index if axis == 1 else 0 for axis in layout)
  stack = jax.lax.dynamic_update_slice(
      stacks[n], stored(new, layout)[None].astype(stacks[n].dtype), start)
  layer = jax.lax.dynamic_index_in_dim(stack, r, keepdims=False).astype(new.dtype)
  return stacks[:n] + (stack,) + stacks[n + 1:], unstored(layer, layout)


@dataclasses.dataclass(frozen=True)
class CrossInputs:
  """What the cross-attention layers read: image states or cached K/V, and the masks."""
  states: jax.Array | None           # (B, N_vision, hidden): projected image features
  allowed: jax.Array | None          # (B, S, N_vision) bool, after full-row unmasking
  row_mask: jax.Array | None         # (B, S) float: 0 where a text row sees no image


class Decoder(nnx.Module):
  """Embedding, the stacked blocks, final norm (the HF `language_model` / `model`)."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    t = config.text
    self.config = config
    self.repeats, self.kinds = t.layer_pattern()
    self.embed_tokens = layers.Embed(t.num_embeddings, t.hidden_size, rngs=rngs,
                                     dtype=config.dtype, param_dtype=config.param_dtype)
    make = {"self": SelfAttentionLayer, "cross": CrossAttentionLayer}
    self.layers = nnx.List([make[kind](config, rngs=rngs, stack=(self.repeats,))
                            for kind in self.kinds])
    self.norm = layers.RMSNorm(t.hidden_size, t.rms_norm_eps, rngs=rngs, dtype=config.dtype,
                               param_dtype=config.param_dtype)

  @property
  def self_slots(self) -> tuple[int, ...]:
    return tuple(j for j, kind in enumerate(self.kinds) if kind == "self")

  @property
  def cross_slots(self) -> tuple[int, ...]:
    return tuple(j for j, kind in enumerate(self.kinds) if kind == "cross")

  def _shard(self, x, axes):
    return parallel.constrain(x, axes, self.config.rules)

  def __call__(self, h, *, positions, allowed, cache: KVCache | None, cross: CrossInputs | None):
    """h (B, S, hidden) embeddings -> (normed hidden, new self K/V, new cross K/V).

    `allowed` (B, S, L) is the self-attention mask over the L keys: the S new tokens
    without a cache, the cache's slots with one (after this call's tokens are written).
    Cross layers run when `cross.states` is given or the cache holds image K/V, and are
    skipped otherwise (text-only input), as in transformers.
    """
    cfg = self.config
    inv_freq = layers.rope_inv_freq(cfg.text.head_dim, cfg.text.rope_theta, cfg.text.rope_scaling)
    has_cached = cache is not None and cache.has_cross
    use_cross = cross is not None and (cross.states is not None or has_cached)
    cached_cross = use_cross and cross.states is None
    self_slots, cross_slots = self.self_slots, self.cross_slots
    act = ("batch", "length", "act_embed")

    def block(module: nnx.List, carry, xs):
      h, ks, vs = carry
      r, cross_kv = xs
      new_cross = []
      for j, kind in enumerate(self.kinds):
        layer = module[j]
        if kind == "self":
          n = self_slots.index(j)
          x = layer.input_layernorm(h)
          q, k, v = layer.self_attn.qkv(x, positions, inv_freq)
          if ks is None:  # no cache: attend over this call's tokens
            k_all, v_all = k, v
          else:  # write this call's K/V into the cache, attend over every slot
            ks, k_all = _write(ks, n, k, r, cache.index, KEY_LAYOUT)
            vs, v_all = _write(vs, n, v, r, cache.index, VALUE_LAYOUT)
          out = layer.self_attn.o_proj(layers.attend(q, k_all, v_all, allowed))
          h = self._shard(h + checkpoint_name(out, "attn_out"), act)
          y = layer.mlp(layer.post_attention_layernorm(h))
          h = self._shard(h + checkpoint_name(y, "mlp_out"), act)
        elif use_cross:
          n = cross_slots.index(j)
          x = layer.input_layernorm(h)
          attn = layer.cross_attn
          q = attn.q_norm(attn.q_proj(x))
          if cached_cross:
            ck = unstored(cross_kv[0][n], KEY_LAYOUT).astype(q.dtype)
            cv = unstored(cross_kv[1][n], VALUE_LAYOUT).astype(q.dtype)
          else:
            ck, cv = attn.kv(cross.states)
            new_cross.append((stored(ck, KEY_LAYOUT), stored(cv, VALUE_LAYOUT)))
          out = attn.o_proj(layers.attend(q, ck, cv, cross.allowed))
          gate = jnp.tanh(layer.cross_attn_attn_gate[...].astype(jnp.float32)).astype(h.dtype)
          h = h + gate * out
          y = layer.mlp(layer.post_attention_layernorm(h))
          if cross.row_mask is not None:
            y = cross.row_mask[..., None].astype(y.dtype) * y
          gate = jnp.tanh(layer.cross_attn_mlp_gate[...].astype(jnp.float32)).astype(h.dtype)
          h = self._shard(h + gate * y, act)
      ys = None
      if new_cross:
        ys = (tuple(k for k, _ in new_cross), tuple(v for _, v in new_cross))
      return (h, ks, vs), ys

    ks = vs = None
    if cache is not None:
      ks, vs = tuple(cache.keys), tuple(cache.values)
    cross_xs = (cache.cross_keys, cache.cross_values) if cached_cross else None
    xs = (jnp.arange(self.repeats), cross_xs)
    (h, ks, vs), new_cross = layers.scan_stack(
        block, self.layers, (h, ks, vs), xs, scan=cfg.scan_layers, policy=cfg.remat)
    return self.norm(h), (ks, vs), new_cross
