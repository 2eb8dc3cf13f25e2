"""Formulas over + - * / and parentheses: tokenise, check, parse and evaluate without `eval`.

Everything here is iterative and linear in the formula's length (no recursion, so 10,000
nested parentheses are fine), reads ASCII digits only, and never converts a long digit string
to an `int` (Python refuses past 4300 digits; a card number has at most two).
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections import Counter
from typing import Callable, Iterator, Sequence

NUMBER, OPERATOR, OPEN, CLOSE = "number", "operator", "open_paren", "close_paren"
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_LEGAL = re.compile(r"[0-9+\-*/()]*")  # `[0-9]`, unlike `\d`, is ASCII only
_TOKEN = re.compile(r"[0-9]+|[+\-*/()]")
_NUMBERS = re.compile(r"[0-9]+")
_LEADING_ZERO = re.compile(r"(?<![0-9])0+[1-9]")
# A number token longer than this (after leading zeros) is kept as its digit string: it can
# never be a card number, and `int()` of it would cost time or raise.
MAX_NUMBER_DIGITS = 18
# CPython's tokenizer refuses more than this many brackets open at once ("too many nested
# parentheses"); the legacy mode reproduces `eval`, so it refuses them too.
PYTHON_MAX_NESTING = 200

# The reference's syntax messages, one per violation.
AFTER_NUMBER = "invalid sequence after number"
AFTER_OPERATOR = "invalid sequence after operator"
BEFORE_OPEN = "invalid sequence before '('"
UNMATCHED_CLOSE = "unmatched closing parenthesis"
AFTER_CLOSE = "invalid sequence after ')'"


def is_legal(formula: str) -> bool:
  """Whether the formula holds only ASCII digits, + - * / and parentheses."""
  return _LEGAL.fullmatch(formula) is not None


def tokenize(formula: str) -> list[str] | None:
  """The tokens (numbers, operators, parentheses), or None when any other character occurs."""
  return _TOKEN.findall(formula) if is_legal(formula) else None


def iter_tokens(formula: str) -> Iterator[str]:
  """The tokens of a legal formula, lazily (for walks that stop after a few)."""
  return (match.group() for match in _TOKEN.finditer(formula))


def kind(token: str) -> str:
  if token in PRECEDENCE:
    return OPERATOR
  if token == "(":
    return OPEN
  if token == ")":
    return CLOSE
  return NUMBER


@dataclasses.dataclass(frozen=True)
class Scan:
  """What the reference's left-to-right syntax scan finds."""

  violations: tuple[str, ...]  # one message per violation, in order
  open_parens: int  # '(' still open at the end (the reference does not penalise them)
  max_depth: int  # most '(' open at once
  last: str | None  # the kind of the last token; None for an empty formula


# One letter per token kind, so the scan walks a string: digits collapse into one 'n'.
_KIND_LETTERS = str.maketrans({**{d: "n" for d in "0123456789"},
                               **{o: "o" for o in PRECEDENCE}, "(": "l", ")": "r"})
_DIGIT_RUNS = re.compile("n+")
_LETTER_KINDS = {"n": NUMBER, "o": OPERATOR, "l": OPEN, "r": CLOSE, None: None}


def scan(formula: str) -> Scan:
  """The reference's adjacency rules over a formula of legal characters: a number or '('
  follows the start, an operator or '('; an operator or ')' follows a number or ')'; ')' must
  close an open '('. (A tight loop over kind letters: hostile formulas have 64K tokens.)"""
  violations = []
  add = violations.append
  depth = max_depth = 0
  prev = None
  for this in _DIGIT_RUNS.sub("n", formula.translate(_KIND_LETTERS)):
    after_operand = prev == "n" or prev == "r"
    if this == "n":
      if after_operand:
        add(AFTER_NUMBER)
    elif this == "o":
      if not after_operand:
        add(AFTER_OPERATOR)
    elif this == "l":
      if after_operand:
        add(BEFORE_OPEN)
      else:
        depth += 1
        if depth > max_depth:
          max_depth = depth
    elif not after_operand:
      add(AFTER_CLOSE)
    elif depth:
      depth -= 1
    else:
      add(UNMATCHED_CLOSE)
    prev = this
  return Scan(tuple(violations), depth, max_depth, _LETTER_KINDS[prev])


def number_key(token: str) -> int | str:
  """The value of a number token as the reference's `int(token)` reads it (leading zeros
  dropped); a token too long to be a card number stays its digit string."""
  digits = token.lstrip("0") or "0"
  return int(digits) if len(digits) <= MAX_NUMBER_DIGITS else digits


def number_messages(formula: str, card_numbers: Sequence[int]) -> list[str]:
  """The reference's number checks: invalid, else overused; and independently unused."""
  used = Counter(map(number_key, _NUMBERS.findall(formula)))
  have = Counter(card_numbers)
  messages = []
  invalid = [n for n in used if n not in have]
  overused = [n for n in used if used[n] > have[n]]
  if invalid:
    messages.append(f"you used invalid numbers: {_list(invalid)}")
  elif overused:
    messages.append(f"you used numbers: {_list(overused)} too many times")
  unused = [n for n in have if have[n] > used[n]]
  if unused:
    messages.append(f"you didn't use numbers: {_list(unused)}")
  return messages


def _list(values) -> str:
  """A list as Python prints a list of ints (long digit strings print the same, unquoted)."""
  return "[" + ", ".join(str(v) for v in values) + "]"


def to_rpn(tokens: Sequence[str]) -> list[str] | None:
  """Reverse Polish order of a well-formed infix formula (shunting-yard: * / bind tighter than
  + -, all left-associative, as Python); None when the tokens are not one complete formula."""
  out, stack = [], []
  expect_operand = True
  for token in tokens:
    this = kind(token)
    if this == NUMBER:
      if not expect_operand:
        return None
      out.append(token)
      expect_operand = False
    elif this == OPEN:
      if not expect_operand:
        return None
      stack.append(token)
    elif this == CLOSE:
      if expect_operand:
        return None
      while stack and stack[-1] != "(":
        out.append(stack.pop())
      if not stack:
        return None
      stack.pop()
    else:
      if expect_operand:
        return None
      while stack and stack[-1] != "(" and PRECEDENCE[stack[-1]] >= PRECEDENCE[token]:
        out.append(stack.pop())
      stack.append(token)
      expect_operand = True
  if expect_operand or "(" in stack:
    return None
  out.extend(reversed(stack))
  return out


def evaluate(rpn: Sequence[str], leaf: Callable[[str], object]):
  """The value of an RPN formula with Python's operators on `leaf(token)` values: Fractions
  give exact arithmetic, ints give Python's (true division makes floats). Raises
  ZeroDivisionError. Callers bound the numbers (the verifier evaluates only card numbers)."""
  stack = []
  for token in rpn:
    if token in _APPLY:
      right = stack.pop()
      stack.append(_APPLY[token](stack.pop(), right))
    else:
      stack.append(leaf(token))
  return stack[0]


def python_accepts(formula: str, max_depth: int) -> bool:
  """Whether CPython's parser accepts a formula that is one complete expression: it refuses
  leading zeros ('03', though '00' is fine) and deep nesting."""
  return max_depth <= PYTHON_MAX_NESTING and _LEADING_ZERO.search(formula) is None
