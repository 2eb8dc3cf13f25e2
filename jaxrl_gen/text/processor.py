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
import functools
import os
from typing import Any, Sequence

from jaxrl_gen.envs import core
from jaxrl_gen.text import chat, images, tokenizer as tokenizer_lib


@dataclasses.dataclass(frozen=True)
class Processor:
  tokenizer: Any
  ids: tokenizer_lib.SpecialIds
  image_size: int | None = None  # None: text only
  max_tiles: int = 4
  image_config: str = ""  # a checkpoint directory configuring the image processor
  date_string: str = chat.DEFAULT_DATE
  eot_newline: bool = False
  template: str | None = None  # Jinja text replacing the tokenizer's chat template

  @classmethod
  def create(cls, tokenizer: str | os.PathLike = "", *, image_size: int | None = None,
             max_tiles: int = 4, date_string: str = chat.DEFAULT_DATE,
             eot_newline: bool = False, template: str | None = None) -> Processor:
    """From a tokenizer source ('' = embedded, or a checkpoint directory). A checkpoint with an
    image processor config brings its own image processor (tile size and count); otherwise
    `image_size` (the preset's tile size) builds Llama-3.2-Vision's; `image_size=None` means
    text only."""
    tok = tokenizer_lib.load(tokenizer)
    image_config = ""
    if str(tokenizer) and images.has_image_processor(tokenizer):
      image_config = os.fspath(tokenizer)
      image_size, max_tiles = images.tile_settings(image_config)
    return cls(tok, tokenizer_lib.special_ids(tok), image_size, max_tiles, image_config,
               date_string, eot_newline, template)

  @functools.cached_property
  def image_processor(self) -> Any | None:
    """transformers' Mllama image processor, built on first use (importing it is slow)."""
    if self.image_config:
      return images.load_image_processor(self.image_config)
    if self.image_size is None:
      return None
    return images.image_processor(self.image_size, self.max_tiles)

  def encode_prompt(self, conversation: Sequence[core.Turn]) -> chat.Encoded:
    """The ids the model continues (generation prompt appended) and the images, in order."""
    self._check_images(conversation)
    return chat.encode_prompt(self.tokenizer, conversation, date_string=self.date_string,
                              template=self.template)

  def encode_sft(self, conversation: Sequence[core.Turn], last_only: bool = False
                 ) -> chat.Encoded:
    """Ids and loss mask (assistant turns, or the last one, plus `<|eot_id|>`) of a training
    example."""
    self._check_images(conversation)
    return chat.encode_sft(self.tokenizer, conversation, date_string=self.date_string,
                           eot_newline=self.eot_newline, last_only=last_only,
                           template=self.template)

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
    if self.image_size is None and core.images(conversation):
      raise ValueError("this conversation has an image but the processor is text-only "
                       "(a text-only model preset or tokenizer)")


def from_config(config, model_config, tokenizer: str | None = None) -> Processor:
  """The processor of a run: `config.text` and the model's vocabulary and image shape.
  `tokenizer`: the tokenizer source (None: config.text.tokenizer; `train.restore.
  tokenizer_source` resolves a checkpoint's own); its ids must fit the model's embedding
  table."""
  source = config.text.tokenizer if tokenizer is None else tokenizer
  vision = model_config.vision
  processor = Processor.create(
      source, image_size=vision.image_size if vision else None,
      max_tiles=vision.max_num_tiles if vision else 4, date_string=config.text.date_string,
      eot_newline="data" in config and config.data.eot_newline,
      template=chat.TEMPLATES[config.text.get("chat_template", "")])
  text = model_config.text
  needed = len(processor.tokenizer)
  if vision is None and processor.ids.image == needed - 1:
    needed -= 1  # `<|image|>` (last, as in Llama-3.2-Vision): a text-only processor never emits it
  if needed > text.num_embeddings:
    raise ValueError(f"the tokenizer has {needed} ids but the model embeds "
                     f"{text.num_embeddings}: set config.text.tokenizer to the model's own")
  if vision is not None:
    if processor.ids.image != model_config.image_token_id:
      raise ValueError(f"the tokenizer's <|image|> is {processor.ids.image}, the model's "
                       f"image_token_id {model_config.image_token_id}")
    if processor.image_size != vision.image_size:
      raise ValueError(f"the image processor makes {processor.image_size}px tiles, the model "
                       f"takes {vision.image_size}px")
  return processor
