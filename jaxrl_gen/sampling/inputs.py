"""Host-side batch preparation for the sampler: bucket sizes, left padding, image inputs and
the cross-attention mask with transformers' `processing_mllama` semantics. NumPy only (the
config files read the defaults below)."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

# Powers of two: an RL run whose prompts grow turn by turn touches a handful of shapes.
PROMPT_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DECODE_LAYERS = ("auto", "scan", "unrolled")  # `generate(decode_layers=...)`


def check_buckets(name: str, buckets: Sequence[int]) -> tuple[int, ...]:
  """Buckets as a strictly increasing tuple of positive ints, or a one-line error."""
  out = tuple(int(b) for b in buckets)
  if not out or out[0] < 1 or any(a >= b for a, b in zip(out, out[1:])):
    raise ValueError(f"{name}={tuple(buckets)}: must be a non-empty, strictly increasing list"
                     " of positive sizes")
  return out


def bucket(n: int, buckets: Sequence[int], multiple: int = 1) -> int:
  """The smallest bucket >= n (past the largest: the next multiple of the largest), rounded
  up to a multiple of `multiple` (the batch's shard count)."""
  size = next((b for b in buckets if b >= n), None)
  if size is None:
    size = -(-n // buckets[-1]) * buckets[-1]
  return -(-size // multiple) * multiple


def token_bucket(n: int) -> int:
  """The new-token buffer: the next power of two (at least 8). The budget itself is a
  runtime value, so every `max_new_tokens` up to the bucket shares one program."""
  return max(8, 1 << (n - 1).bit_length())


def eos_array(eos_ids: Sequence[int]) -> np.ndarray:
  """The EOS ids as a runtime array, padded with -1 (never sampled) to a power of two, so
  changing them does not compile a new program."""
  ids = sorted({int(e) for e in eos_ids})
  out = np.full(max(1, 1 << (len(ids) - 1).bit_length()) if ids else 1, -1, np.int32)
  out[:len(ids)] = ids
  return out


def left_pad(prompts: Sequence[Sequence[int]], length: int, rows: int,
             pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids, mask) of shape (rows, length): each prompt right-aligned; extra rows all padding."""
  ids = np.full((rows, length), pad_id, np.int32)
  mask = np.zeros((rows, length), np.int32)
  for i, p in enumerate(prompts):
    ids[i, length - len(p):] = p
    mask[i, length - len(p):] = 1
  return ids, mask


def image_token_spans(ids: Sequence[int], image_token_id: int) -> list[tuple[int, int]]:
  """[start, end) of the prompt tokens that see each image, in order (transformers' rule):
  image k is seen from its `<|image|>` token up to the next image token (the last one: to
  the end); a run of adjacent image tokens shares the span of the run's last image."""
  locations = [i for i, t in enumerate(ids) if t == image_token_id]
  ends = locations[1:] + [len(ids)]
  spans = [[start, end] for start, end in zip(locations, ends)]
  for j in range(len(spans) - 2, -1, -1):
    if spans[j][1] == spans[j][0] + 1:  # the next token is another image token
      spans[j][1] = spans[j + 1][1]
  return [(s, e) for s, e in spans]


def cross_attention_mask(ids: Sequence[int], image_token_id: int,
                         aspect_ratio_mask: np.ndarray) -> np.ndarray:
  """A prompt's (len, images, tiles) mask from its `<|image|>` tokens: the tokens in image
  k's span see that image's real tiles (its `aspect_ratio_mask` row); images without a
  token, and tokens before the first image, see nothing."""
  n_img, n_tiles = aspect_ratio_mask.shape
  mask = np.zeros((len(ids), n_img, n_tiles), np.int32)
  for k, (start, end) in enumerate(image_token_spans(ids, image_token_id)[:n_img]):
    mask[start:end, k] = aspect_ratio_mask[k]
  return mask


@dataclasses.dataclass(frozen=True)
class ImageInputs:
  """One batch's images as transformers' `MllamaImageProcessor` returns them, a row per prompt.

  pixel_values (B, images, tiles, C, H, W); aspect_ratio_ids (B, images); aspect_ratio_mask
  (B, images, tiles). A row without an image (in a batch where others have one) is what the
  processor pads with: zero pixels, aspect-ratio id 0, mask [1, 0, ...]; transformers runs
  such a row through the cross-attention layers with an all-zero mask, and so do we.
  cross_attention_mask: None derives each row's mask from its `<|image|>` tokens
  (`cross_attention_mask` above); else a sequence of per-row (len(prompt), images, tiles)
  arrays, as the processor's output for the unpadded prompt.
  """
  pixel_values: np.ndarray
  aspect_ratio_ids: np.ndarray
  aspect_ratio_mask: np.ndarray
  cross_attention_mask: Sequence[np.ndarray] | None = None

  @classmethod
  def blank(cls, rows: int, images: int, tile_shape: Sequence[int]) -> ImageInputs:
    """`rows` rows without an image in `images` slots of `tile_shape` (tiles, C, H, W),
    as the processor pads them: zero pixels, aspect-ratio id 0, mask [1, 0, ...]."""
    tile_shape = tuple(tile_shape)
    ar_mask = np.zeros((rows, images, tile_shape[0]), np.int32)
    ar_mask[:, :, 0] = 1
    return cls(np.zeros((rows, images) + tile_shape, np.float32),
               np.zeros((rows, images), np.int32), ar_mask)

  @classmethod
  def from_rows(cls, rows: Sequence[Mapping[str, np.ndarray] | None]) -> ImageInputs:
    """Stacks per-prompt processor outputs (each with a leading batch dim of 1; None for a
    row without an image), padding every row to the batch's largest image count."""
    real = [r for r in rows if r is not None]
    if not real:
      raise ValueError("ImageInputs.from_rows: no row has an image (pass images=None)")
    n_img = max(np.shape(r["aspect_ratio_ids"])[1] for r in real)
    out = cls.blank(len(rows), n_img, np.shape(real[0]["pixel_values"])[2:])
    for i, r in enumerate(rows):
      if r is None:
        continue
      k = np.shape(r["aspect_ratio_ids"])[1]
      out.pixel_values[i, :k] = np.asarray(r["pixel_values"])[0]
      out.aspect_ratio_ids[i, :k] = np.asarray(r["aspect_ratio_ids"])[0]
      out.aspect_ratio_mask[i, :k] = np.asarray(r["aspect_ratio_mask"])[0]
    return out

  def check(self, prompts: Sequence[Sequence[int]], max_tiles: int) -> None:
    """Shapes against the prompts and the vision config; a one-line error naming the field."""
    rows = len(prompts)
    shapes = {"pixel_values": 6, "aspect_ratio_ids": 2, "aspect_ratio_mask": 3}
    for name, ndim in shapes.items():
      shape = np.shape(getattr(self, name))
      if len(shape) != ndim or shape[0] != rows:
        raise ValueError(f"images.{name} has shape {shape}: expected {ndim} dims with"
                         f" {rows} rows (one per prompt)")
    n_img, n_tiles = np.shape(self.pixel_values)[1:3]
    if n_tiles != max_tiles or np.shape(self.aspect_ratio_mask)[1:] != (n_img, n_tiles) or (
        np.shape(self.aspect_ratio_ids)[1] != n_img):
      raise ValueError(f"images: pixel_values {np.shape(self.pixel_values)}, aspect_ratio_ids"
                       f" {np.shape(self.aspect_ratio_ids)} and aspect_ratio_mask"
                       f" {np.shape(self.aspect_ratio_mask)} disagree on (images, tiles) or"
                       f" differ from the model's max_num_tiles={max_tiles}")
    if self.cross_attention_mask is None:
      return
    if len(self.cross_attention_mask) != rows:
      raise ValueError(f"images.cross_attention_mask has {len(self.cross_attention_mask)} rows:"
                       f" expected {rows} (one per prompt)")
    for i, p in enumerate(prompts):
      shape = np.shape(self.cross_attention_mask[i])
      if shape != (len(p), n_img, n_tiles):
        raise ValueError(f"images.cross_attention_mask[{i}] has shape {shape}: expected"
                         f" {(len(p), n_img, n_tiles)} (prompt length, images, tiles)")

  def padded(self, prompts: Sequence[Sequence[int]], length: int, rows: int,
             image_token_id: int, images: int | None = None) -> dict[str, np.ndarray]:
    """The model's image inputs for the left-padded (rows, length) batch, with `images`
    image slots (default: this batch's; more when other processes' rows have more); extra
    rows and slots get the processor's empty-image padding, and extra rows an all-zero mask."""
    n, (n_img, n_tiles) = len(prompts), np.shape(self.pixel_values)[1:3]
    slots = n_img if images is None else images
    out = ImageInputs.blank(rows, slots, np.shape(self.pixel_values)[2:])
    out.pixel_values[:n, :n_img] = self.pixel_values
    out.aspect_ratio_ids[:n, :n_img] = self.aspect_ratio_ids
    out.aspect_ratio_mask[:n, :n_img] = self.aspect_ratio_mask
    cross = np.zeros((rows, length, slots, n_tiles), np.int32)
    for i, p in enumerate(prompts):
      if self.cross_attention_mask is None:
        row = cross_attention_mask(p, image_token_id, out.aspect_ratio_mask[i])
      else:
        row = np.asarray(self.cross_attention_mask[i])  # shape checked by `check`
      cross[i, length - len(p):, :row.shape[1]] = row
    return dict(pixel_values=out.pixel_values, aspect_ratio_ids=out.aspect_ratio_ids,
                aspect_ratio_mask=out.aspect_ratio_mask, cross_attention_mask=cross)
