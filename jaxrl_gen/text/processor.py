"""`Processor`: conversations to model inputs, for SFT batches and RL rollouts alike.

    processor = Processor.create(tokenizer="", image_size=56, max_tiles=4)
    prompt = processor.encode_prompt(conversation)         # ids to generate from, images
    example = processor.encode_sft(conversation)            # ids + loss mask on the responses
    arrays = processor.image_inputs([prompt.images], [prompt.ids])  # pixel_values, masks

One object holds the tokenizer, the image processor, the template's date and the special ids,
so the trainer, the sampler and the rollout encode text the same way.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from jaxrl_gen.envs import core
from jaxrl_gen.text import chat, images, tokenizer as tokenizer_lib


@dataclasses.dataclass(frozen=True)
class Processor:
  tokenizer: Any
  image_processor: Any | None  # None: text only
  ids: tokenizer_lib.SpecialIds
  max_tiles: int = 4
  date_string: str = chat.DEFAULT_DATE
  eot_newline: bool = False

  @classmethod
  def create(cls, tokenizer: str | os.PathLike = "", *, image_size: int | None = None,
             max_tiles: int = 4, date_string: str = chat.DEFAULT_DATE,
             eot_newline: bool = False) -> Processor:
    """From a tokenizer source ('' = embedded, or a checkpoint directory). A checkpoint with an
    image processor config brings its own image processor (and tile count); otherwise `image_size` (the
    preset's tile size) builds Llama-3.2-Vision's; `image_size=None` means text only."""
    tok = tokenizer_lib.load(tokenizer)
    if str(tokenizer) and images.has_image_processor(tokenizer):
      image_processor = images.load_image_processor(tokenizer)
      max_tiles = image_processor.max_image_tiles
    elif image_size is not None:
      image_processor = images.image_processor(image_size, max_tiles)
    else:
      image_processor = None
    return cls(tok, image_processor, tokenizer_lib.special_ids(tok), max_tiles, date_string,
               eot_newline)

  def encode_prompt(self, conversation: Sequence[core.Turn]) -> chat.Encoded:
    """The ids the model continues (generation prompt appended) and the images, in order."""
    self._check_images(conversation)
    return chat.encode_prompt(self.tokenizer, conversation, date_string=self.date_string)

  def encode_sft(self, conversation: Sequence[core.Turn]) -> chat.Encoded:
    """Ids and loss mask (assistant turns plus their `<|eot_id|>`) of a training example."""
    self._check_images(conversation)
    return chat.encode_sft(self.tokenizer, conversation, date_string=self.date_string,
                           eot_newline=self.eot_newline)

  def image_inputs(self, batch_images: Sequence[Sequence[Any]],
                   batch_ids: Sequence[Sequence[int]], length: int | None = None) -> dict:
    """pixel_values, aspect_ratio_ids, aspect_ratio_mask and cross_attention_mask of a batch
    (every example with at least one image)."""
    arrays, num_tiles = images.preprocess(self.image_processor, batch_images)
    arrays["cross_attention_mask"] = images.cross_attention_mask(
        batch_ids, num_tiles, self.max_tiles, self.ids.image, length)
    return arrays

  def decode(self, ids: Sequence[int]) -> str:
    """Generated ids to text, special tokens skipped (what the environment grades)."""
    return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

  def _check_images(self, conversation: Sequence[core.Turn]):
    if self.image_processor is None and core.images(conversation):
      raise ValueError("this conversation has an image but the processor is text-only "
                       "(a text-only model preset or tokenizer)")
