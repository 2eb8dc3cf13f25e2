"""`Model`: one class for text-only Llama-3 checkpoints and Llama-3.2-Vision (Mllama).

Parameter paths mirror transformers: `language_model.{embed_tokens,layers,norm}`, `lm_head`
(absent when tied), `vision_model.*`, `multi_modal_projector` - so freezing by path is a
prefix match. Inputs use HF's names and shapes; the image path can run once per prompt
(`encode_images`) and its K/V live in the cache for decoding.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.models import layers
from jaxrl_gen.models.config import ModelConfig
from jaxrl_gen.models.llama import KEY_LAYOUT, VALUE_LAYOUT, CrossInputs, Decoder, KVCache
from jaxrl_gen.models.vision import VisionEncoder


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ModelOutput:
  logits: jax.Array | None           # (B, S, vocab) fp32 (S = logits_to_keep if set)
  hidden: jax.Array | None = None    # (B, S, hidden): last hidden states after the final norm
  cache: KVCache | None = None       # the updated cache when one was passed in


class Model(nnx.Module):

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    t = config.text
    self.config = config
    self.language_model = Decoder(config, rngs=rngs)
    self.lm_head = None if t.tie_word_embeddings else layers.Dense(
        (t.hidden_size,), (t.vocab_size,), ("embed",), ("vocab",), rngs=rngs, dtype=config.dtype,
        param_dtype=config.param_dtype)
    v = config.vision
    self.vision_model = VisionEncoder(config, rngs=rngs) if v else None
    self.multi_modal_projector = layers.Dense(
        (v.output_dim,), (t.hidden_size,), ("vision_features",), ("embed",), use_bias=True,
        rngs=rngs, dtype=config.dtype, param_dtype=config.param_dtype) if v else None

  # --- image path ------------------------------------------------------------------------

  def encode_images(self, pixel_values, aspect_ratio_ids, aspect_ratio_mask) -> jax.Array:
    """Vision tower + projector: (B, images * tiles * (patches + 1), hidden) cross states."""
    if self.vision_model is None:
      raise ValueError("pixel_values given to a text-only model (its config has no vision tower)")
    if aspect_ratio_ids is None or aspect_ratio_mask is None:
      raise ValueError("pixel_values need aspect_ratio_ids and aspect_ratio_mask")
    features = self.vision_model(pixel_values, aspect_ratio_ids, aspect_ratio_mask)
    states = self.multi_modal_projector(features)
    return states.reshape(states.shape[0], -1, states.shape[-1])

  def _cross_inputs(self, states, cross_attention_mask, cache: KVCache | None, seq: int):
    """The cross-attention mask in transformers' semantics: a text row attends to the tiles
    its mask marks; a row that marks none is unmasked for attention (it then sees every
    image token) but zeroes its cross-layer MLP output."""
    mask = cross_attention_mask
    if mask is None and cache is not None and cache.cross_mask is not None:
      # Decoding: each new token repeats the prompt's last mask row, as HF generate does.
      b, i, t = cache.cross_mask.shape
      mask = jnp.broadcast_to(cache.cross_mask[:, None], (b, seq, i, t))
    if mask is None:
      return CrossInputs(states, None, None), None
    b, s, n_img, n_tiles = mask.shape
    tiles = mask.reshape(b, s, n_img * n_tiles) != 0
    row = jnp.any(tiles, axis=-1)
    allowed = jnp.repeat(tiles, self.config.vision.num_patches, axis=-1) | ~row[..., None]
    return CrossInputs(states, allowed, row.astype(jnp.float32)), mask[:, -1]

  # --- cache -----------------------------------------------------------------------------

  def init_cache(self, batch_size: int, max_length: int, dtype=None) -> KVCache:
    """An empty self-attention cache of `max_length` slots (compute dtype by default).

    Size it for prompt + generated tokens: inside jit a write past the end cannot raise, and
    XLA clamps it onto the last slots.
    """
    t, dec = self.config.text, self.language_model
    dtype = dtype or self.config.dtype
    logical = (batch_size, max_length, t.num_kv_heads, t.head_dim)
    shape = lambda layout: (dec.repeats,) + tuple(logical[i] for i in layout)  # noqa: E731
    keys = tuple(jnp.zeros(shape(KEY_LAYOUT), dtype) for _ in dec.self_slots)
    values = tuple(jnp.zeros(shape(VALUE_LAYOUT), dtype) for _ in dec.self_slots)
    return KVCache(keys=keys, values=values,
                   valid=jnp.zeros((batch_size, max_length), bool),
                   index=jnp.zeros((), jnp.int32),
                   next_position=jnp.zeros((batch_size,), jnp.int32))

  # --- forward ---------------------------------------------------------------------------

  def __call__(self, input_ids: jax.Array, *, attention_mask: jax.Array | None = None,
               positions: jax.Array | None = None, pixel_values: jax.Array | None = None,
               aspect_ratio_ids: jax.Array | None = None,
               aspect_ratio_mask: jax.Array | None = None,
               cross_attention_mask: jax.Array | None = None,
               cross_attention_states: jax.Array | None = None,
               cache: KVCache | None = None, return_hidden: bool = False,
               logits_to_keep: int = 0) -> ModelOutput:
    """Logits for `input_ids` (B, S).

    attention_mask (B, S): 1 for real tokens, 0 for padding (default all 1). With a cache,
      it covers this call's tokens only; the cache remembers earlier ones.
    positions (B, S): RoPE positions (default: 0.. without a cache, continuing the cache's
      per-row next position with one). Left-padded batches pass cumsum(mask) - 1.
    pixel_values / aspect_ratio_ids / aspect_ratio_mask: HF's image inputs, or
      cross_attention_states from `encode_images`; cross_attention_mask (B, S, images, tiles).
    cache: from `init_cache` (prefill) or a previous call (decode); the output's cache is the
      updated one (this call's tokens written, image K/V stored on prefill).
    logits_to_keep: >0 computes logits for the last that many positions only; -1 none (the
      caller applies `logits` to `hidden` piece by piece, e.g. a chunked loss).
    """
    cfg = self.config
    b, s = input_ids.shape
    if pixel_values is not None:
      if cross_attention_states is not None:
        raise ValueError("pass pixel_values or cross_attention_states, not both")
      cross_attention_states = self.encode_images(pixel_values, aspect_ratio_ids, aspect_ratio_mask)
    if cross_attention_states is not None and cfg.vision is None:
      raise ValueError("cross_attention_states given to a text-only model")

    mask = (jnp.ones((b, s), bool) if attention_mask is None else attention_mask.astype(bool))
    if positions is None:
      start = cache.next_position[:, None] if cache is not None else jnp.zeros((b, 1), jnp.int32)
      positions = start + jnp.arange(s, dtype=jnp.int32)[None]
    positions = positions.astype(jnp.int32)

    if cache is None:
      query_slot = jnp.arange(s)
      valid = mask
    else:
      query_slot = cache.index + jnp.arange(s)
      valid = jax.lax.dynamic_update_slice(cache.valid, mask, (0, cache.index))
    key_slot = jnp.arange(valid.shape[1])
    allowed = (key_slot[None, None, :] <= query_slot[None, :, None]) & valid[:, None, :]

    cross, last_row = None, None
    uses_images = cross_attention_states is not None or (cache is not None and cache.has_cross)
    if uses_images and cfg.vision is not None:
      cross, last_row = self._cross_inputs(cross_attention_states, cross_attention_mask, cache, s)

    h = self.language_model.embed_tokens(input_ids)
    h = parallel.constrain(h, ("batch", "length", "act_embed"), cfg.rules)
    h, (keys, values), new_cross = self.language_model(
        h, positions=positions, allowed=allowed, cache=cache, cross=cross)

    new_cache = None
    if cache is not None:
      cross_keys, cross_values = (new_cross if new_cross is not None
                                  else (cache.cross_keys, cache.cross_values))
      if new_cross is not None:
        dtype = cache.keys[0].dtype
        cross_keys = tuple(k.astype(dtype) for k in cross_keys)
        cross_values = tuple(v.astype(dtype) for v in cross_values)
      new_cache = KVCache(
          keys=keys, values=values, valid=valid, index=cache.index + s,
          next_position=positions[:, -1] + 1, cross_keys=cross_keys, cross_values=cross_values,
          cross_mask=last_row if last_row is not None else cache.cross_mask)

    logits = None
    if logits_to_keep >= 0:
      logits = self.logits(h[:, -logits_to_keep:] if logits_to_keep else h)
    return ModelOutput(logits=logits, hidden=h if return_hidden else None, cache=new_cache)

  def logits(self, h: jax.Array) -> jax.Array:
    """The LM head on final hidden states (B, S, hidden) -> (B, S, vocab) fp32."""
    t = self.config.text
    if self.lm_head is None:
      logits = self.language_model.embed_tokens.attend(h, t.vocab_size)
    else:
      kernel = self.lm_head.kernel[...].astype(h.dtype)
      logits = jnp.einsum("bsd,dv->bsv", h, kernel, preferred_element_type=jnp.float32)
    return parallel.constrain(logits, ("batch", "length", "act_vocab"), self.config.rules)


def abstract(config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, state of ShapeDtypeStructs) of the model: shapes without memory."""
  return nnx.split(nnx.eval_shape(lambda: Model(config, rngs=nnx.Rngs(0))))


def param_count(config: ModelConfig) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(abstract(config)[1]))


def create(config: ModelConfig, *, mesh: jax.sharding.Mesh | None = None, seed: int = 0) -> Model:
  """A randomly initialised model; with a mesh its parameters are born sharded."""
  make = lambda: Model(config, rngs=nnx.Rngs(seed))  # noqa: E731
  if mesh is None:
    return make()
  return parallel.create_sharded(make, mesh, config.rules)
