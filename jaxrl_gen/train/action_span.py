"""Which output tokens are the "action" and which the "thought" (`reference.md` §4.3,
decisions.md row 7): host-side masks, per output, that `ppo.sequence_logprob` weights
(thought x `thought_coef`, action x 1).

`ppo.action_span = 'field'` (default): the answer field the verifier reads (the task's
`action_field`: `"formula": "..."` for GP, `"action": "..."` for V-IRL), found on the DECODED
text (so it does not depend on how a tokenizer happens to split ` "formula":`) and mapped to
tokens through each token's character offset. Every output token is scored: tokens
overlapping the field, from its opening quote to the value's closing quote, are action; all
others (the reasoning, the other fields, closing braces, EOS) are thought. The field is
located as `fields.string_field` reads it (the first `"key": "value"` on one line); failing
that, `"key":` to the end of its line (an unquoted or multi-line value). When the field is
absent the verifier grades the text "None", a failure whatever the tokens say, so no token is
singled out: the whole output is thought.

`ppo.action_span = 'legacy'`: the reference rule on token ids. Find the last occurrence of
the 3-token ` "formula":` pattern (its ids come from the real tokenizer: Llama-3 has
[330, 60599, 794]) at output index m: action = tokens m..n-1, thought = tokens 2..m-1. With no
match, m is one before the 4th-to-last scored token, i.e. the action is the last 5 tokens.
Token 0 is never scored, token 1 is dropped, tokens whose id is `masked_id` (0) are masked,
and with fewer than 4 scored tokens the output gets the constants -2 / -1, no gradient. The
index arithmetic is the reference's, Python slicing included (a match at index 0 gives the
odd split the reference gets).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from jaxrl_gen.envs import fields

RULES = ("field", "legacy")
LEGACY_MIN_SCORED = 4


class Span(NamedTuple):
  """Float masks over one output's n tokens, and whether the constants replace its log-prob."""

  thought: np.ndarray
  action: np.ndarray
  constant: bool = False


def field_span(text: str, field: str) -> tuple[int, int] | None:
  """Character span [start, end) of the answer field in `text`, or None when absent."""
  span = fields.quoted_span(text, field)
  if span is not None:
    return span
  start = text.find(f'"{field}":')
  if start < 0:
    return None
  end = text.find("\n", start)
  return start, len(text) if end < 0 else end


def token_starts(pieces: Sequence[str]) -> list[int]:
  """Character offsets of tokens whose decoded pieces concatenate to the text."""
  starts, offset = [], 0
  for piece in pieces:
    starts.append(offset)
    offset += len(piece)
  return starts


def field_masks(text: str, starts: Sequence[int], field: str) -> Span:
  """The 'field' rule: `starts[i]` is the character offset where output token i begins in
  the decoded `text` (token i covers up to the next start; zero-width tokens, e.g. a skipped
  EOS, cover nothing and are thought)."""
  starts = np.asarray(starts, dtype=np.int64).reshape(-1)
  if starts.size and (starts[0] < 0 or np.any(np.diff(starts) < 0) or starts[-1] > len(text)):
    raise ValueError(f"token offsets must be non-decreasing within the text's {len(text)}"
                     " characters")
  ends = np.append(starts[1:], len(text))
  action = np.zeros(starts.size, np.float32)
  span = field_span(text, field)
  if span is not None:
    action[(starts < span[1]) & (ends > span[0])] = 1.0
  return Span(1.0 - action, action)


def legacy_masks(output_ids: Sequence[int], pattern_ids: Sequence[int],
                 masked_id: int = 0) -> Span:
  """The 'legacy' rule over one output's token ids (EOS included)."""
  ids = np.asarray(output_ids, dtype=np.int64).reshape(-1)
  pattern = np.asarray(pattern_ids, dtype=np.int64).reshape(-1)
  n = ids.size
  # Reference position j scores token j + 1 (token 0 never is); ids equal to masked_id are 0.
  selected_tokens = np.arange(1, max(n, 1))
  scored = np.zeros(n, bool)
  scored[1:] = ids[1:] != masked_id
  matches = []
  if pattern.size and n >= pattern.size:
    windows = np.lib.stride_tricks.sliding_window_view(ids, pattern.size)
    matches = np.nonzero((windows == pattern).all(axis=1))[0]
  if len(matches):
    split = int(matches[-1])
  else:
    positions = np.nonzero(scored[1:])[0]  # reference positions j with a scored token
    if positions.size < LEGACY_MIN_SCORED:
      return Span(np.zeros(n, np.float32), np.zeros(n, np.float32), True)
    split = int(positions[-LEGACY_MIN_SCORED])
  thought, action = np.zeros(n, np.float32), np.zeros(n, np.float32)
  thought[selected_tokens[1:split - 1]] = 1.0
  action[selected_tokens[split - 1:]] = 1.0
  return Span(thought * scored, action * scored)


def stack(spans: Sequence[Span], length: int) -> dict[str, np.ndarray]:
  """The buffer arrays `ppo_update` reads: `thought_mask`, `action_mask` [B, length] (zero
  padded on the right) and `constant_logp` [B]."""
  thought = np.zeros((len(spans), length), np.float32)
  action = np.zeros((len(spans), length), np.float32)
  for row, span in enumerate(spans):
    if span.thought.size > length:
      raise ValueError(f"an output of {span.thought.size} tokens does not fit length {length}")
    thought[row, :span.thought.size] = span.thought
    action[row, :span.action.size] = span.action
  constant = np.array([span.constant for span in spans], bool)
  return {"thought_mask": thought, "action_mask": action, "constant_logp": constant}
