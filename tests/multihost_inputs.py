"""The model, batch and sampling calls shared by the multi-host test and its worker processes."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_gen import sampling
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


# The sampling check: per call, the rows of process 0 then process 1 (mixed prompt lengths;
# 0, 1 or 2 images per row). The greedy call pads process 1's rows to process 0's two image
# slots; in the sampled call process 1 has no image at all and passes images=None.
SAMPLING_CALLS = (
    dict(images=((2, 1, 0), (1, 1)), lengths=((17, 6, 9), (4, 12)), temperature=0.0),
    dict(images=((1, 2, 1), (0, 0)), lengths=((5, 19, 8), (14, 3)), temperature=0.9,
         top_k=40, top_p=0.95),
)


def _image_row(rng, k: int) -> dict | None:
  if not k:
    return None
  ar_mask = np.zeros((1, k, 4), np.int32)
  ar_mask[0, :, :2] = 1  # 1x2 tiles
  return dict(pixel_values=rng.normal(size=(1, k, 4, 3, 56, 56)).astype(np.float32),
              aspect_ratio_ids=np.full((1, k), 2, np.int32), aspect_ratio_mask=ar_mask)


def sampling_rows(call: dict) -> list[tuple[list[list[int]], list[dict | None]]]:
  """Per process: its prompts (an `<|image|>` token per image) and image rows."""
  rng = np.random.default_rng(5)
  out = []
  for counts, lengths in zip(call["images"], call["lengths"]):
    prompts = [rng.integers(0, 2048, n).tolist() for n in lengths]
    for p, k in zip(prompts, counts):
      p[1:1 + 2 * k:2] = [2048] * k  # image tokens at 1, 3, ...
    out.append((prompts, [_image_row(rng, k) for k in counts]))
  return out


def generate(m, prompts, image_rows, call: dict, mesh):
  images = None if not any(image_rows) else sampling.ImageInputs.from_rows(image_rows)
  settings = {k: v for k, v in call.items() if k not in ("images", "lengths")}
  return sampling.generate(m, prompts, images=images, key=jax.random.key(3), max_new_tokens=6,
                           eos_ids=(), mesh=mesh, **settings)


def bad_calls(process_id: int, mesh, unsplit_mesh) -> dict:
  """`generate` calls that process 1 gets wrong, or whose mesh does not split the rows
  across the processes: every process must raise at once rather than wait for the other."""
  base = dict(prompts=[[1, 2, 3]], key=jax.random.key(0), max_new_tokens=4, temperature=0.0,
              eos_ids=(), mesh=mesh)
  return {"rejected": dict(base, prompts=[[1, 5000]] if process_id else [[1, 2, 3]]),
          "settings": dict(base, temperature=0.5 * process_id),
          "unsplit": dict(base, mesh=unsplit_mesh)}
