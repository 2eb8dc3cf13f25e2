"""Tokenizers: a real checkpoint's, from its local directory or GGUF file, or the embedded one.

    tokenizer = load("")                     # the tiny presets' tokenizer (package data)
    tokenizer = load("/ckpt/Llama-3.2-11B-Vision-Instruct")  # its own tokenizer + template
    tokenizer = load("SmolLM2-135M-Instruct.Q4_1.gguf")      # built from the GGUF metadata

All are `transformers` fast tokenizers with a chat template (the checkpoint's own
`chat_template.json`/`.jinja` or GGUF `tokenizer.chat_template`, or the Llama-3.2-Vision
template shipped with the embedded one) in one of the turn formats `special_ids` knows:
Llama-3's (`<|eot_id|>`) or ChatML's (`<|im_end|>`, e.g. SmolLM2). Nothing is downloaded
from a model hub: a path that is not a tokenizer directory or GGUF file is a one-line error.
A URL (gs://...) is read through a local copy of the GGUF file, or of the directory's files
but its weights (`paths.local_copy`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any

from jaxrl_gen import paths

# Files of a model directory that a tokenizer never reads (not copied from a URL).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")
EMBEDDED = pathlib.Path(__file__).resolve().parent.parent / "assets" / "tiny_tokenizer"
IMAGE_TOKEN = "<|image|>"
EOT_TOKEN = "<|eot_id|>"
# Generation stops at any of these (Llama-3-Instruct's generation_config eos ids).
STOP_TOKENS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")
# The end of an assistant turn, by chat format: Llama-3's, ChatML's.
END_OF_TURN = (EOT_TOKEN, "<|im_end|>")
PAD_TOKEN = "<|finetune_right_pad_id|>"


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """The ids the data pipeline, sampler and losses need."""

  pad: int
  eot: int  # the end of a turn (`END_OF_TURN`)
  bos: int
  image: int | None  # None for a text-only tokenizer without `<|image|>`
  stop: tuple[int, ...]


def load(source: str | os.PathLike = "") -> Any:
  """A tokenizer: '' is the embedded tiny tokenizer, anything else a local directory or a
  `.gguf` file, local or a URL (gs://...)."""
  source = str(source)
  if source and not paths.is_local(source):
    source = paths.local_copy(source, keep=lambda name: not name.endswith(WEIGHT_SUFFIXES))
  path = pathlib.Path(source) if source else EMBEDDED
  if path.suffix == ".gguf" and path.is_file():
    return _load(str(path.parent), path.name)
  if not (path / "tokenizer.json").is_file():
    raise FileNotFoundError(f"tokenizer {str(path)!r}: not a directory with tokenizer.json "
                            "nor a .gguf file (give a local checkpoint, or '' for the "
                            "embedded one)")
  return _load(str(path))


@functools.lru_cache(maxsize=8)
def _load(path: str, gguf_file: str | None = None) -> Any:
  # The fast-tokenizer class directly: `AutoTokenizer` reads the model config, which imports
  # torch where it is installed; Llama-3 tokenizers are all `tokenizer.json` anyway.
  from transformers import PreTrainedTokenizerFast

  tokenizer = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True,
                                                      gguf_file=gguf_file)
  if tokenizer.chat_template is None:
    raise ValueError(f"tokenizer {os.path.join(path, gguf_file or '')!r} has no chat template "
                     "(an -Instruct checkpoint has one)")
  return tokenizer


def special_ids(tokenizer: Any) -> SpecialIds:
  """Pad (Llama-3.2's `<|finetune_right_pad_id|>`, else the tokenizer's pad), the end of turn
  (`<|eot_id|>` or ChatML's `<|im_end|>`), `<|begin_of_text|>` (else the tokenizer's bos),
  `<|image|>` and the stop ids (Llama-3's, the end of turn and the tokenizer's eos)."""
  vocab, name = tokenizer.get_vocab(), tokenizer.name_or_path
  eot = next((vocab[t] for t in END_OF_TURN if t in vocab), None)
  if eot is None:
    raise ValueError(f"tokenizer {name!r} has no end-of-turn token (one of {END_OF_TURN})")
  bos = vocab.get("<|begin_of_text|>", tokenizer.bos_token_id)
  if bos is None:
    raise ValueError(f"tokenizer {name!r} has no <|begin_of_text|> or bos token")
  pad = vocab.get(PAD_TOKEN, tokenizer.pad_token_id)
  if pad is None:
    raise ValueError(f"tokenizer {name!r} has no pad token")
  stop = [vocab[t] for t in STOP_TOKENS if t in vocab] + [eot, tokenizer.eos_token_id]
  return SpecialIds(pad=pad, eot=eot, bos=bos, image=vocab.get(IMAGE_TOKEN),
                    stop=tuple(dict.fromkeys(i for i in stop if i is not None)))
