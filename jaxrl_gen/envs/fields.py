"""Reading answer fields out of model output, which is hostile input.

The reference reads a field with `json.loads` first and, when that fails (the usual case: the
SFT targets are Python-dict style with a trailing comma), with a regex per field, e.g.
`"formula": "(.*?)"` or `"cards": \\[([^\\]]+)\\]`. These helpers give the same answers
without the regex engine's quadratic worst case (a megabyte of `"cards": [` with no `]`
would backtrack for minutes) and without ever executing anything:

- only the first `MAX_ANSWER_CHARS` characters of an answer are read;
- every search is a left-to-right `str.find` scan, linear in the text.
"""

from __future__ import annotations

import json
from typing import Any

# A 512-token answer is a few KiB; anything past this is noise, and reading it costs time.
MAX_ANSWER_CHARS = 1 << 16


def clip(text: Any) -> str:
  """The part of an answer that is read: a `str`, at most `MAX_ANSWER_CHARS` long."""
  if not isinstance(text, str):
    text = "" if text is None else str(text)
  return text[:MAX_ANSWER_CHARS]


def json_object(text: str) -> dict | None:
  """The answer as a JSON object, or None when it is not one (never raises)."""
  try:
    value = json.loads(text)
  except (ValueError, RecursionError, MemoryError):
    return None
  return value if isinstance(value, dict) else None


def quoted_span(text: str, key: str) -> tuple[int, int] | None:
  """Where the regex `"key": "(.*?)"` (`.` not matching a newline) first matches, linearly:
  (start of the opening `"key"`, end of the closing quote), or None."""
  prefix = f'"{key}": "'
  start = text.find(prefix)
  while start >= 0:
    begin = start + len(prefix)
    end = text.find('"', begin)
    if end < 0:
      return None  # no closing quote anywhere after: no later start can match either
    newline = text.find("\n", begin, end)
    if newline < 0:
      return start, end + 1
    start = text.find(prefix, newline)
  return None


def _find_quoted(text: str, key: str) -> str | None:
  """The value the regex `"key": "(.*?)"` reads (the group), or None."""
  span = quoted_span(text, key)
  return None if span is None else text[span[0] + len(f'"{key}": "'):span[1] - 1]


def _find_bracketed(text: str, key: str) -> str | None:
  """The first match of the regex `"key": \\[([^\\]]+)\\]`, linearly."""
  prefix = f'"{key}": ['
  start = text.find(prefix)
  close = -1
  while start >= 0:
    begin = start + len(prefix)
    if close < begin:
      close = text.find("]", begin)
      if close < 0:
        return None
    if close > begin:  # `[^\]]+` needs at least one character
      return text[begin:close]
    start = text.find(prefix, begin)
  return None


def string_field(text: str, key: str, parsed: dict | None = None) -> str | None:
  """A string-valued field: JSON first, then the reference regex. None when absent.

  `parsed` is `json_object(text)` when the caller already has it. A JSON value that is not a
  string (a number, a list) is returned as its JSON text, so a formula written as a bare
  number still reaches the verifier as text.
  """
  if parsed is not None and key in parsed:
    value = parsed[key]
    return value if isinstance(value, str) else json.dumps(value)
  return _find_quoted(text, key)


def list_field(text: str, key: str, parsed: dict | None = None) -> list[str] | None:
  """A list-valued field as a list of item strings, quotes and spaces stripped.

  Accepts strict JSON (`["A", "3"]`, `[1, 3]`), the Python-repr style of the SFT targets
  (`['A', '3']`) and unquoted items (`[A, 3, K, 6]`). None when the field is absent.
  """
  if parsed is not None and key in parsed:
    value = parsed[key]
    if isinstance(value, list):
      return [str(v).strip() for v in value]
    value = str(value)
  else:
    value = _find_bracketed(text, key)
    if value is None:
      return None
  return [item.strip().strip("'\"").strip() for item in value.strip("[]").split(",")]
