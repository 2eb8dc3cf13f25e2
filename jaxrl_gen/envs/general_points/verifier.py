"""The GeneralPoints verifier: an answer text and a hand in, (reward, message) out.

Model output is hostile input: only the first `fields.MAX_ANSWER_CHARS` characters are read,
nothing is executed, and every check is linear in the formula's length.

reward_mode='paper' (`decisions.md` row 3): one reward per attempt from the paper's table, the
first failing check decides, exact rational arithmetic:
  GP-VL recognition -1.5 -> illegal characters -3 -> syntax -3 (the reference's adjacency
  messages, each kind once, plus an empty formula, a formula ending in an operator or '(', an
  unclosed '(')
  -> number misuse -2 -> value == target +5 -> otherwise -1 (a division by zero is a wrong
  value) with the reference's prefix diagnostics. A number written with leading zeros ('03')
  is that number, as the reference's number check reads it (its `eval` refuses the literal).
reward_mode='legacy': the reference code's additive scoring, reproduced with our own parser:
  syntax and number penalties add up; with none, Python's int/float arithmetic decides +5; a
  formula Python cannot evaluate that starts some solution scores +1; the prefix walk scores -1,
  or 0 with the message "." when every prefix matches (float rounding, e.g. 8/(3-8/3)).
  GP-VL card items lose every space inside them first, as the reference's ('1 0' is '10').
Deliberate difference from the reference in both modes: only ASCII digits are digits (the
reference's `\\d` also reads e.g. Arabic-Indic digits); other digits are illegal characters.
A number token too long to be a card number is an invalid number (the reference crashes
converting one past 4300 digits).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from jaxrl_gen.envs import fields
from jaxrl_gen.envs.general_points import formula as fm
from jaxrl_gen.envs.general_points import solver
from jaxrl_gen.envs.general_points.cards import Hand, normalize_rank
from jaxrl_gen.envs.general_points.params import EnvParams

REWARD_FN = {
    "CORRECT_SOLUTION": 5.0,
    "PARTIAL_SOLUTION": 1.0,
    "NO_SOLUTION": -1.0,
    "INCORRECT_VISION": -1.5,
    "INCORRECT_NUMBER": -2.0,
    "ILLEGAL_FORMULA": -3.0,
}
PAPER_REWARDS = (5.0, -1.0, -2.0, -3.0, -1.5)

WRONG_CARDS = "you recognized wrong cards"  # the reference returns it without a final period
ILLEGAL_CHARACTERS = "illegal characters"
CORRECT = "Correct solution"
PARTIAL = "partial solution"
NO_MATCH = "your formula does not match any solution"
# Paper-mode syntax messages for what the reference's scan lets through.
EMPTY = "empty formula"
INCOMPLETE = "incomplete formula"
UNCLOSED = "unclosed parenthesis"


@dataclasses.dataclass(frozen=True)
class Grade:
  reward: float
  message: str
  formula: str  # the formula read from the answer (text before the first '=')


def read_formula(answer: str, parsed: dict | None = None) -> str:
  """The formula field before its first '='; the literal 'None' when absent (as the reference)."""
  text = fields.string_field(answer, "formula", parsed)
  return "None" if text is None else text.split("=", 1)[0]


def recognized(answer: str, hand: Hand, parsed: dict | None = None, *,
               strip_spaces: bool = False) -> bool:
  """Whether the answer's cards are the hand's ranks, as multisets (spellings normalised).
  `strip_spaces` (legacy mode) removes every space inside an item first, as the reference's
  list normalisation does, so '1 0' reads as '10'."""
  cards = fields.list_field(answer, "cards", parsed) or []
  if strip_spaces:
    cards = [card.replace(" ", "") for card in cards]
  return sorted(normalize_rank(c) for c in cards) == sorted(hand.plain)


def grade(answer_text: str, hand: Hand, params: EnvParams) -> Grade:
  """The verifier's full result for one attempt. Never raises on any text."""
  answer = fields.clip(answer_text)
  parsed = fields.json_object(answer)
  formula = read_formula(answer, parsed)
  legacy = params.reward_mode == "legacy"
  if not params.language_only and not recognized(answer, hand, parsed, strip_spaces=legacy):
    return Grade(REWARD_FN["INCORRECT_VISION"], WRONG_CARDS, formula)
  score = _legacy if legacy else _paper
  reward, messages = score(formula, hand.numbers, params.target)
  return Grade(float(reward), ", ".join(messages) + ".", formula)


def verify(answer_text: str, hand: Hand, params: EnvParams) -> tuple[float, str]:
  """(reward, message) for one answer to `hand`."""
  result = grade(answer_text, hand, params)
  return result.reward, result.message


def well_formed(formula: str | None) -> bool:
  """Whether a formula read from an answer (`Grade.formula`) is a complete arithmetic
  expression: legal characters, syntax and closed parentheses, i.e. what paper mode grades
  past its -3 checks. This is what "the verifier can parse the answer" means in the
  evaluation's `parse_rate`."""
  return formula is not None and not _form_messages(formula)


def _form_messages(formula: str) -> list[str]:
  """Paper mode's -3 messages of a formula (empty: well formed)."""
  if not fm.is_legal(formula):
    return [ILLEGAL_CHARACTERS]
  syntax = fm.scan(formula)
  messages = list(dict.fromkeys(syntax.violations))  # each kind once: one reward, short message
  if not formula:
    messages.append(EMPTY)
  elif syntax.last in (fm.OPERATOR, fm.OPEN):
    messages.append(INCOMPLETE)
  if syntax.open_parens:
    messages.append(UNCLOSED)
  return messages


def _paper(formula: str, numbers: tuple[int, ...], target: int) -> tuple[float, list[str]]:
  messages = _form_messages(formula)
  if messages:
    return REWARD_FN["ILLEGAL_FORMULA"], messages
  messages = fm.number_messages(formula, numbers)
  if messages:
    return REWARD_FN["INCORRECT_NUMBER"], messages
  # Now a complete formula over exactly the card numbers: small, exact, and bounded.
  try:
    value = fm.evaluate(fm.to_rpn(fm.tokenize(formula)), lambda t: Fraction(fm.number_key(t)))
  except ZeroDivisionError:
    value = None
  if value == target:
    return REWARD_FN["CORRECT_SOLUTION"], [CORRECT]
  return REWARD_FN["NO_SOLUTION"], [_prefix_walk(formula, numbers, target) or NO_MATCH]


def _legacy(formula: str, numbers: tuple[int, ...], target: int) -> tuple[float, list[str]]:
  if not fm.is_legal(formula):
    return REWARD_FN["ILLEGAL_FORMULA"], [ILLEGAL_CHARACTERS]
  syntax = fm.scan(formula)
  number_messages = fm.number_messages(formula, numbers)
  messages = list(syntax.violations) + number_messages
  reward = (REWARD_FN["ILLEGAL_FORMULA"] * len(syntax.violations)
            + REWARD_FN["INCORRECT_NUMBER"] * len(number_messages))
  if reward:
    return reward, messages
  value = _python_value(formula, syntax.max_depth)
  if value is not None and value == target:
    return REWARD_FN["CORRECT_SOLUTION"], [CORRECT]
  if value is None and formula in solver.prefixes(_key(numbers), target):
    return REWARD_FN["PARTIAL_SOLUTION"], [PARTIAL]
  walk = _prefix_walk(formula, numbers, target)
  return (REWARD_FN["NO_SOLUTION"], [walk]) if walk else (0.0, [])


def _python_value(formula: str, max_depth: int):
  """The value the reference's Python evaluation of `formula` gives (int or float), None
  where that evaluation raises; computed by our own parser, nothing is executed."""
  rpn = fm.to_rpn(fm.tokenize(formula))
  if rpn is None or not fm.python_accepts(formula, max_depth):
    return None  # a SyntaxError in Python
  try:
    return fm.evaluate(rpn, fm.number_key)
  except ZeroDivisionError:
    return None


def _prefix_walk(formula: str, numbers, target: int) -> str | None:
  """The reference's diagnostics: the first token prefix that starts no solution; None when
  every prefix starts one."""
  starts = solver.prefixes(_key(numbers), target)
  end, previous = 0, ""
  for token in fm.iter_tokens(formula):
    end += len(token)
    register = formula[:end]
    if register not in starts:  # solutions are short, so this is reached within a few tokens
      if not previous:
        return NO_MATCH
      return f"{previous} is partially correct but the full formula does not match any solution"
    previous = register
  return None


def _key(numbers) -> tuple[int, ...]:
  return tuple(sorted(numbers))
