"""Mllama's vision tower: tiled patch embedding, class token, aspect-ratio-gated tile and
position embeddings, a local then a gated global ViT, intermediate-layer features.

Shapes follow transformers: pixel_values (B, images, tiles, C, H, W), aspect_ratio_ids
(B, images), aspect_ratio_mask (B, images, tiles); the output is (B, images, tiles,
patches + 1, hidden * (1 + len(intermediate_layers))).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.models import layers
from jaxrl_gen.models.config import ModelConfig, VisionConfig


class VisionAttention(nnx.Module):

  def __init__(self, v: VisionConfig, *, stack, **kw):
    head_dim = v.hidden_size // v.num_heads
    proj = lambda i, o, ia, oa: layers.Dense(i, o, ia, oa, stack=stack, **kw)  # noqa: E731
    self.q_proj = proj((v.hidden_size,), (v.num_heads, head_dim), ("embed",), ("heads", "head_dim"))
    self.k_proj = proj((v.hidden_size,), (v.num_heads, head_dim), ("embed",), ("heads", "head_dim"))
    self.v_proj = proj((v.hidden_size,), (v.num_heads, head_dim), ("embed",), ("heads", "head_dim"))
    self.o_proj = proj((v.num_heads, head_dim), (v.hidden_size,), ("heads", "head_dim"), ("embed",))

  def __call__(self, x, allowed):
    return self.o_proj(layers.attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), allowed))


class VisionMLP(nnx.Module):

  def __init__(self, v: VisionConfig, *, stack, **kw):
    self.fc1 = layers.Dense((v.hidden_size,), (v.intermediate_size,), ("embed",), ("mlp",),
                            use_bias=True, stack=stack, **kw)
    self.fc2 = layers.Dense((v.intermediate_size,), (v.hidden_size,), ("mlp",), ("embed",),
                            use_bias=True, stack=stack, **kw)

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class VisionLayer(nnx.Module):
  """Pre-LayerNorm ViT block; the global encoder's blocks gate each branch with tanh(g)."""

  def __init__(self, v: VisionConfig, *, gated: bool, stack, rngs, dtype, param_dtype):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.input_layernorm = layers.LayerNorm(v.hidden_size, v.norm_eps, stack=stack, **kw)
    self.self_attn = VisionAttention(v, stack=stack, **kw)
    self.post_attention_layernorm = layers.LayerNorm(v.hidden_size, v.norm_eps, stack=stack, **kw)
    self.mlp = VisionMLP(v, stack=stack, **kw)
    self.gated = gated
    if gated:
      init = layers.constant(math.pi / 4)
      self.gate_attn = layers.make_param(rngs, init, (1,), (None,), param_dtype, stack)
      self.gate_ffn = layers.make_param(rngs, init, (1,), (None,), param_dtype, stack)

  def __call__(self, h, allowed):
    y = self.self_attn(self.input_layernorm(h), allowed)
    if self.gated:
      y = jnp.tanh(self.gate_attn[...].astype(jnp.float32)).astype(y.dtype) * y
    h = h + y
    y = self.mlp(self.post_attention_layernorm(h))
    if self.gated:
      y = jnp.tanh(self.gate_ffn[...].astype(jnp.float32)).astype(y.dtype) * y
    return h + y


class VisionTransformer(nnx.Module):
  """A stack of `VisionLayer`s (HF `transformer` / `global_transformer`)."""

  def __init__(self, v: VisionConfig, num_layers: int, *, gated: bool, **kw):
    self.num_layers = num_layers
    self.layers = VisionLayer(v, gated=gated, stack=(num_layers,), **kw)


class TileEmbedding(nnx.Module):
  """Per-aspect-ratio embedding of each tile, times tanh(gate) (pre/post tile embeddings)."""

  def __init__(self, v: VisionConfig, *, rngs, dtype, param_dtype):
    self.dtype = dtype
    self.embedding = layers.make_param(
        rngs, layers.normal(), (v.max_aspect_ratio_id + 1, v.max_num_tiles, v.hidden_size),
        (None, None, "embed"), param_dtype)
    self.gate = layers.make_param(rngs, layers.zeros, (1,), (None,), param_dtype)

  def __call__(self, h, aspect_ratio_ids):  # h (N, tiles, tokens, D); ids (N,)
    emb = jnp.take(self.embedding[...], aspect_ratio_ids, axis=0)[:, :, None, :]
    gate = jnp.tanh(self.gate[...].astype(jnp.float32)).astype(self.dtype)
    return h + gate * emb.astype(self.dtype)


class GatedPositionalEmbedding(nnx.Module):
  """(1 - tanh g) * per-token embedding + tanh g * per-aspect-ratio, per-tile, per-token one."""

  def __init__(self, v: VisionConfig, *, rngs, dtype, param_dtype):
    self.dtype = dtype
    self.gate = layers.make_param(rngs, layers.zeros, (1,), (None,), param_dtype)
    self.embedding = layers.make_param(rngs, layers.normal(v.hidden_size ** -0.5),
                                       (v.num_patches, v.hidden_size), (None, "embed"), param_dtype)
    self.tile_embedding = layers.make_param(
        rngs, layers.normal(), (v.max_aspect_ratio_id + 1, v.max_num_tiles, v.num_patches,
                                v.hidden_size), (None, None, None, "embed"), param_dtype)

  def __call__(self, h, aspect_ratio_ids):  # h (N, tiles, patches + 1, D)
    gate = jnp.tanh(self.gate[...].astype(jnp.float32)).astype(self.dtype)
    h = h + (1 - gate) * self.embedding[...].astype(self.dtype)
    tile = jnp.take(self.tile_embedding[...], aspect_ratio_ids, axis=0).astype(self.dtype)
    return h + gate * tile


class VisionEncoder(nnx.Module):
  """The HF `vision_model`."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    v = config.vision
    self.config = config
    kw = dict(rngs=rngs, dtype=config.dtype, param_dtype=config.param_dtype)
    self.dtype = config.dtype
    self.patch_embedding = layers.make_param(
        rngs, layers.normal(), (v.num_channels, v.patch_size, v.patch_size, v.hidden_size),
        (None, None, None, "embed"), config.param_dtype)
    self.class_embedding = layers.make_param(rngs, layers.normal(v.hidden_size ** -0.5),
                                             (v.hidden_size,), ("embed",), config.param_dtype)
    self.gated_positional_embedding = GatedPositionalEmbedding(v, **kw)
    self.pre_tile_positional_embedding = TileEmbedding(v, **kw)
    self.post_tile_positional_embedding = TileEmbedding(v, **kw)
    self.layernorm_pre = layers.LayerNorm(v.hidden_size, 1e-5, **kw)
    self.layernorm_post = layers.LayerNorm(v.hidden_size, 1e-5, **kw)
    self.transformer = VisionTransformer(v, v.num_layers, gated=False, **kw)
    self.global_transformer = VisionTransformer(v, v.num_global_layers, gated=True, **kw)

  def _shard(self, x):
    return parallel.constrain(x, ("batch", "length", "act_embed"), self.config.rules)

  def _run(self, stack: VisionTransformer, h, allowed, start=0, stop=None):
    body = lambda layer, carry, _: (self._shard(layer(carry, allowed)), None)  # noqa: E731
    h, _ = layers.scan_stack(body, stack.layers, h, scan=self.config.scan_layers,
                             policy=self.config.remat, start=start, stop=stop)
    return h

  def __call__(self, pixel_values, aspect_ratio_ids, aspect_ratio_mask):
    v = self.config.vision
    b, n_img, n_tiles, c, height, width = pixel_values.shape
    n = b * n_img
    grid_h, grid_w, p = height // v.patch_size, width // v.patch_size, v.patch_size
    x = pixel_values.astype(self.dtype).reshape(n * n_tiles, c, grid_h, p, grid_w, p)
    h = jnp.einsum("nchpwq,cpqd->nhwd", x, self.patch_embedding[...].astype(self.dtype))
    h = h.reshape(n, n_tiles, grid_h * grid_w, v.hidden_size)
    ids = aspect_ratio_ids.reshape(n)
    h = self.pre_tile_positional_embedding(h, ids)
    cls = jnp.broadcast_to(self.class_embedding[...].astype(self.dtype),
                           (n, n_tiles, 1, v.hidden_size))
    h = jnp.concatenate([cls, h], axis=2)
    tokens = h.shape[2]
    h = self.layernorm_pre(self.gated_positional_embedding(h, ids))

    # Pad each tile to a multiple of 8 tokens. Padding tokens and padding tiles may not
    # attend to each other; real tokens attend to everything (transformers' outer-product mask).
    padded = -(-tokens // 8) * 8
    h = jnp.pad(h, ((0, 0), (0, 0), (0, padded - tokens), (0, 0)))
    is_pad = (aspect_ratio_mask.reshape(n, n_tiles, 1) == 0) | (jnp.arange(padded) >= tokens)
    is_pad = is_pad.reshape(n, n_tiles * padded)
    allowed = ~(is_pad[:, :, None] & is_pad[:, None, :])
    h = self._shard(h.reshape(n, n_tiles * padded, v.hidden_size))

    # Local encoder, run in segments that end at the intermediate layers we keep.
    ends = sorted({i + 1 for i in v.intermediate_layers} | {v.num_layers})
    kept, start = {}, 0
    for end in ends:
      h = self._run(self.transformer, h, allowed, start, end)
      kept[end - 1] = h
      start = end
    intermediate = jnp.stack([kept[i] for i in v.intermediate_layers], axis=-1)
    intermediate = intermediate.reshape(n, n_tiles, padded, -1)[:, :, :tokens]

    h = self.layernorm_post(h).reshape(n, n_tiles, padded, v.hidden_size)
    h = self.post_tile_positional_embedding(h, ids).reshape(n, n_tiles * padded, v.hidden_size)
    h = self._run(self.global_transformer, h, allowed)
    h = h.reshape(n, n_tiles, padded, v.hidden_size)[:, :, :tokens]
    out = jnp.concatenate([h, intermediate], axis=-1)
    return out.reshape(b, n_img, n_tiles, tokens, v.output_dim)
