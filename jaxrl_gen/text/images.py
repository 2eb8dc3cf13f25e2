"""Image inputs for Mllama: transformers' image processor, and the cross-attention mask.

The processor is transformers' `MllamaImageProcessorPil` (the PIL backend: no torchvision):
a real checkpoint's comes from its `preprocessor_config.json`; a preset's is Llama-3.2-Vision's
(CLIP mean/std, bilinear, tiles of the preset's `image_size`, up to `max_num_tiles`). It tiles
each image and returns `pixel_values` [batch, images, tiles, 3, size, size] (float32),
`aspect_ratio_ids` [batch, images] and `aspect_ratio_mask` [batch, images, tiles].
`cross_attention_mask` follows transformers' `MllamaProcessor`: each `<|image|>` token's image
is seen by the tokens from that position on (up to the next image), on the image's real tiles.
"""

from __future__ import annotations

import io
import os
from typing import Any, Sequence

import numpy as np

# Llama-3.2-Vision's preprocessor_config.json (OpenAI CLIP statistics).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_KEYS = ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")


def image_processor(image_size: int, max_tiles: int) -> Any:
  """Llama-3.2-Vision's image processor with the preset's tile size and tile count."""
  from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

  return MllamaImageProcessorPil(
      size={"height": image_size, "width": image_size}, max_image_tiles=max_tiles,
      image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), resample=2, do_convert_rgb=True)


CONFIG_FILES = ("preprocessor_config.json", "processor_config.json")


def has_image_processor(path: str | os.PathLike) -> bool:
  """Whether a checkpoint directory configures an image processor (HF writes either file)."""
  return any(os.path.isfile(os.path.join(path, name)) for name in CONFIG_FILES)


def tile_settings(path: str | os.PathLike) -> tuple[int, int]:
  """(tile size, max tiles) of a checkpoint's image processor config, read without
  transformers."""
  import json

  for name in CONFIG_FILES:
    where = os.path.join(path, name)
    if os.path.isfile(where):
      with open(where, encoding="utf-8") as f:
        config = json.load(f)
      config = config.get("image_processor", config)
      try:
        size = config["size"]
        return int(size["height"]), int(config.get("max_image_tiles", 4))
      except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: no image size in the image processor config") from None
  raise FileNotFoundError(f"{str(path)!r} has no preprocessor_config.json")


def load_image_processor(path: str | os.PathLike) -> Any:
  """A checkpoint's own image processor (its `preprocessor_config.json`), PIL backend."""
  from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

  if not has_image_processor(path):
    raise FileNotFoundError(f"{str(path)!r} has no preprocessor_config.json (not a vision "
                            "checkpoint directory)")
  return MllamaImageProcessorPil.from_pretrained(str(path), local_files_only=True)


def to_pil(image: Any) -> Any:
  """A PIL RGB image from a PIL image, an HWC uint8 array, or encoded (PNG/JPEG) bytes."""
  from PIL import Image

  if isinstance(image, Image.Image):
    return image.convert("RGB") if image.mode != "RGB" else image
  if isinstance(image, (bytes, bytearray)):
    with Image.open(io.BytesIO(image)) as decoded:
      return decoded.convert("RGB")
  array = np.asarray(image)
  if array.ndim != 3 or array.shape[-1] not in (3, 4) or array.dtype != np.uint8:
    raise ValueError(f"an image must be PIL, PNG/JPEG bytes or HWC uint8; got {array.dtype} "
                     f"{array.shape}")
  return Image.fromarray(array).convert("RGB")


def preprocess(processor: Any, images: Sequence[Sequence[Any]]) -> tuple[dict, list[list[int]]]:
  """Tiles a batch (one list of images per example, each list non-empty): the model's image
  arrays and the tile count of every image."""
  if not images or any(len(row) == 0 for row in images):
    raise ValueError("preprocess needs at least one image per example")
  out = processor([[to_pil(im) for im in row] for row in images], return_tensors="np")
  arrays = {"pixel_values": np.asarray(out["pixel_values"], np.float32),
            "aspect_ratio_ids": np.asarray(out["aspect_ratio_ids"], np.int32),
            "aspect_ratio_mask": np.asarray(out["aspect_ratio_mask"], np.int32)}
  return arrays, [list(row) for row in out["num_tiles"]]


def cross_attention_mask(ids: Sequence[Sequence[int]], num_tiles: Sequence[Sequence[int]],
                         max_tiles: int, image_token_id: int, length: int | None = None
                         ) -> np.ndarray:
  """[batch, length, images, max_tiles] int32: transformers' Mllama cross-attention mask."""
  from transformers.models.mllama import processing_mllama as hf

  spans = [hf.get_cross_attention_token_mask(list(map(int, row)), image_token_id) for row in ids]
  for row_spans, row_tiles in zip(spans, num_tiles):
    if len(row_spans) != len(row_tiles):
      raise ValueError(f"{len(row_spans)} image tokens but {len(row_tiles)} images in an example")
  length = max(len(row) for row in ids) if length is None else length
  return hf.convert_sparse_cross_attention_mask_to_dense(
      spans, num_tiles=num_tiles, max_num_tiles=max_tiles, length=length).astype(np.int32)
