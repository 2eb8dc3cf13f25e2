"""The model and batch shared by the multi-host test and its worker processes."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_gen.models import mllama


def model(config, mesh=None):
  """The tiny Mllama with its cross-attention gates opened (they are 0 at init)."""
  m = mllama.create(config, mesh=mesh, seed=7)
  layer = m.language_model.layers[3]
  layer.cross_attn_attn_gate[...] = jnp.full_like(layer.cross_attn_attn_gate[...], 0.6)
  layer.cross_attn_mlp_gate[...] = jnp.full_like(layer.cross_attn_mlp_gate[...], 0.4)
  return m


def inputs(batch: int = 4, seq: int = 10) -> dict:
  rng = np.random.default_rng(11)
  ids = rng.integers(0, 2048, (batch, seq)).astype(np.int32)
  ids[:, 2] = 2048  # <|image|>
  ar_mask = np.array([[[1, 1, 0, 0]], [[1, 0, 0, 0]], [[1, 1, 1, 1]], [[1, 1, 1, 0]]])[:batch]
  cross = np.zeros((batch, seq, 1, 4), np.int32)
  cross[:, 2:] = ar_mask[:, None]
  return dict(input_ids=ids,
              pixel_values=rng.normal(size=(batch, 1, 4, 3, 56, 56)).astype(np.float32),
              aspect_ratio_ids=np.array([[2], [1], [6], [3]], np.int32)[:batch],
              aspect_ratio_mask=ar_mask.astype(np.int32), cross_attention_mask=cross)


@nnx.jit
def forward(m, batch):
  return m(**batch).logits
