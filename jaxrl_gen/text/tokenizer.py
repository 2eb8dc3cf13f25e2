"""Tokenizers: a real checkpoint's, from its local directory, or the embedded tiny one.

    tokenizer = load("")                     # the tiny presets' tokenizer (package data)
    tokenizer = load("/ckpt/Llama-3.2-11B-Vision-Instruct")  # its own tokenizer + template

Both are `transformers` fast tokenizers carrying the Llama-3 special tokens and a chat template
(the checkpoint's own `chat_template.json`/`.jinja`, or the Llama-3.2-Vision template shipped
with the embedded one). Nothing is downloaded: a path that is not a tokenizer directory is a
one-line error.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any

EMBEDDED = pathlib.Path(__file__).resolve().parent.parent / "assets" / "tiny_tokenizer"
IMAGE_TOKEN = "<|image|>"
EOT_TOKEN = "<|eot_id|>"
# Generation stops at any of these (Llama-3-Instruct's generation_config eos ids).
STOP_TOKENS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")
PAD_TOKEN = "<|finetune_right_pad_id|>"


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """The ids the data pipeline, sampler and losses need."""

  pad: int
  eot: int
  bos: int
  image: int | None  # None for a text-only tokenizer without `<|image|>`
  stop: tuple[int, ...]


def load(source: str | os.PathLike = "") -> Any:
  """A tokenizer: '' is the embedded tiny tokenizer, anything else a local directory."""
  path = pathlib.Path(source) if str(source) else EMBEDDED
  if not (path / "tokenizer.json").is_file():
    raise FileNotFoundError(f"tokenizer {str(path)!r}: not a directory with tokenizer.json "
                            "(give a local checkpoint directory, or '' for the embedded one)")
  return _load(str(path))


@functools.lru_cache(maxsize=8)
def _load(path: str) -> Any:
  # The fast-tokenizer class directly: `AutoTokenizer` reads the model config, which imports
  # torch where it is installed; Llama-3 tokenizers are all `tokenizer.json` anyway.
  from transformers import PreTrainedTokenizerFast

  tokenizer = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
  if tokenizer.chat_template is None:
    raise ValueError(f"tokenizer {path!r} has no chat template (an -Instruct checkpoint has one)")
  return tokenizer


def special_ids(tokenizer: Any) -> SpecialIds:
  """Pad (Llama-3.2's `<|finetune_right_pad_id|>`, else the tokenizer's pad), `<|eot_id|>`,
  `<|begin_of_text|>`, `<|image|>` and the stop ids of a Llama-3 tokenizer."""
  vocab = tokenizer.get_vocab()
  missing = [t for t in (EOT_TOKEN, "<|begin_of_text|>") if t not in vocab]
  if missing:
    raise ValueError(f"tokenizer {tokenizer.name_or_path!r} lacks Llama-3 token {missing[0]}")
  pad = vocab.get(PAD_TOKEN, tokenizer.pad_token_id)
  if pad is None:
    raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no pad token")
  return SpecialIds(pad=pad, eot=vocab[EOT_TOKEN], bos=vocab["<|begin_of_text|>"],
                    image=vocab.get(IMAGE_TOKEN),
                    stop=tuple(vocab[t] for t in STOP_TOKENS if t in vocab))
