"""Conversations to token ids: the prompt a model answers, and SFT examples with a loss mask.

The reference (`reference.md` §2.5, §5) renders one user message with content `[image?, text]`
through the checkpoint's chat template with `add_generation_prompt=True` and tokenizes the text
with `add_special_tokens=False` (the template writes `<|begin_of_text|>` itself). For
Llama-3.2-Vision the template prepends a system block "Cutting Knowledge Date: December
2023\\nToday Date: {date}\\n\\n" when the conversation has no image; the date is a fixed,
configurable `date_string` so prompts do not change with the calendar.

SFT examples are the rendered conversation cut into segments at the assistant turns: each
context segment (template text up to and including the assistant header) and each response
(the turn's text plus the template's `<|eot_id|>`) is tokenized on its own, so the ids of a
response are exactly what the model generates after the prompt ids (tokenizing the joined
string could merge the header's "\\n\\n" with a response that starts with a newline, as every
GP answer does). Only response tokens are supervised. With `eot_newline` the reference SFT
code's "\\n" after `<|eot_id|>` is appended to each response and supervised too; by default it
is not, since the template never puts a newline there and generation stops at `<|eot_id|>`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

import numpy as np

from jaxrl_gen.envs import core

DEFAULT_DATE = "26 Jul 2024"
ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"
# The Llama-3.2-Vision-Instruct chat template (a data file, byte for byte).
LLAMA32_VISION_TEMPLATE = (ASSETS / "llama32_vision_chat_template.jinja").read_text()
# Llama-3's turn format without the system block the Llama-3.2-Vision template prepends to
# text-only chats (about 27 tokens of dates): `text.chat_template='plain'`, for models trained
# from scratch, whose every token costs a CPU.
PLAIN_TEMPLATE = (ASSETS / "plain_chat_template.jinja").read_text()
TEMPLATES = {"": None, "plain": PLAIN_TEMPLATE}


@dataclasses.dataclass(frozen=True)
class Encoded:
  """Token ids of one conversation, its images in order and, for SFT, the loss mask."""

  ids: np.ndarray  # int32 [length]
  images: tuple = ()
  loss_mask: np.ndarray | None = None  # bool [length]: True on supervised (response) tokens


def render(tokenizer: Any, conversation: Sequence[core.Turn], *,
           add_generation_prompt: bool = True, date_string: str = DEFAULT_DATE,
           template: str | None = None) -> str:
  """The chat-template text of a conversation: the tokenizer's own template, or `template`
  (Jinja text, e.g. `PLAIN_TEMPLATE`)."""
  if not conversation:
    raise ValueError("cannot render an empty conversation")
  messages = core.to_chat(conversation)
  if not core.images(conversation):
    # Plain-string content: every template takes it (ChatML ones such as SmolLM2's only
    # concatenate strings); Llama-3.2-Vision's renders it exactly as the text parts.
    messages = [{"role": m["role"], "content": m["content"][0]["text"]} for m in messages]
  return tokenizer.apply_chat_template(
      messages, tokenize=False, add_generation_prompt=add_generation_prompt,
      date_string=date_string, chat_template=template)


def tokenize(tokenizer: Any, text: str) -> list[int]:
  """Ids of template text; special tokens written in it are recognised, none are added."""
  return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_prompt(tokenizer: Any, conversation: Sequence[core.Turn], *,
                  date_string: str = DEFAULT_DATE, template: str | None = None) -> Encoded:
  """What the model answers next: the whole conversation with the assistant header appended."""
  text = render(tokenizer, conversation, date_string=date_string, template=template)
  return Encoded(np.asarray(tokenize(tokenizer, text), np.int32), tuple(core.images(conversation)))


def segments(tokenizer: Any, conversation: Sequence[core.Turn], *,
             date_string: str = DEFAULT_DATE, eot_newline: bool = False,
             last_only: bool = False, template: str | None = None) -> list[tuple[str, bool]]:
  """The rendered conversation as (text, supervised) pieces, ending with the last response;
  every response is supervised, or with `last_only` the last one alone (earlier answers are
  then context, e.g. failed attempts before a revision)."""
  if not conversation or conversation[0].role == "assistant":
    raise ValueError("an SFT conversation must start with a user (or system) turn")
  if conversation[-1].role != "assistant":
    conversation = _through_last_response(conversation)
  pieces, done, last = [], 0, len(conversation) - 1
  for i, turn in enumerate(conversation):
    if turn.role != "assistant":
      continue
    prompt = render(tokenizer, conversation[:i], date_string=date_string, template=template)
    full = render(tokenizer, conversation[:i + 1], add_generation_prompt=False,
                  date_string=date_string, template=template)
    if not full.startswith(prompt) or len(prompt) < done:
      raise ValueError("the chat template does not render this conversation's turns as "
                       "prefixes of each other (an image after the first turn?)")
    pieces.append((prompt[done:], False))
    pieces.append((full[len(prompt):] + ("\n" if eot_newline else ""),
                   not last_only or i == last))
    done = len(full)
  return pieces


def encode_sft(tokenizer: Any, conversation: Sequence[core.Turn], *,
               date_string: str = DEFAULT_DATE, eot_newline: bool = False,
               last_only: bool = False, template: str | None = None) -> Encoded:
  """Ids and loss mask of a conversation whose assistant turns (or the last) are the targets."""
  ids, mask = [], []
  for text, supervised in segments(tokenizer, conversation, date_string=date_string,
                                   eot_newline=eot_newline, last_only=last_only,
                                   template=template):
    piece = tokenize(tokenizer, text)
    ids += piece
    mask += [supervised] * len(piece)
  return Encoded(np.asarray(ids, np.int32), tuple(core.images(conversation)),
                 np.asarray(mask, bool))


def _through_last_response(conversation: Sequence[core.Turn]) -> tuple[core.Turn, ...]:
  last = max((i for i, t in enumerate(conversation) if t.role == "assistant"), default=None)
  if last is None:
    raise ValueError("an SFT conversation needs at least one assistant turn (the target)")
  return tuple(conversation[:last + 1])
