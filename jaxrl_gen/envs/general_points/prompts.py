"""The reference's GP prompts (byte for byte: the checkpoints were trained on them) and the
expert answer format of its SFT data (`reference.md` §2.5, §2.6)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxrl_gen.envs.general_points import formula as fm
from jaxrl_gen.envs.general_points import solver
from jaxrl_gen.envs.general_points.cards import Hand
from jaxrl_gen.envs.general_points.params import EnvParams

FACE_CARDS_AS_10 = "'J', 'Q', and 'K' count as '10'."
FACE_CARDS_AS_11_12_13 = "'J', 'Q', and 'K' count as '11', '12', and '13' respectively."

_TASK = (
    "\n[Task Description]\n"
    "You are an expert {target} points card game player. {observing}\n"
    "Note that {face}, and each card must be used once.\n"
    "Your goal is to output a formula that evaluates to {target} using numbers from the cards"
    " and operators such as '+', '-', '*', '/', '(', ')', and '='.\n\n")
_OUTPUT = (
    "{{\n"
    '  "cards": [x, y, z, w], where {face},\n'
    '  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,\n'
    "  \"formula\": 'an equation that equals {target}',\n"
    "}}\n\n")
PROMPT_L = (_TASK.replace("{observing}", "You will receive a set of 4 cards.")
            + "[Input]\nCards: {cards}\n\n[Output]\n" + _OUTPUT)
PROMPT_VL = (_TASK.replace("{observing}", "You are observing these four cards in the image.")
             + "[Output]\nYour response should be a valid json file in the following format:\n"
             + _OUTPUT)
ANSWER = '\n{{\n  "cards": {cards},\n  "number": {numbers},\n  "formula": "{formula}",\n}}'


def face_card_message(params: EnvParams) -> str:
  return FACE_CARDS_AS_10 if params.face_cards_as_10 else FACE_CARDS_AS_11_12_13


def prompt(hand: Hand, params: EnvParams) -> str:
  """The first user message: GP-L lists the cards, GP-VL refers to the image."""
  template = PROMPT_L if params.language_only else PROMPT_VL
  return template.format(target=params.target, face=face_card_message(params),
                         cards=list(hand.plain))


def answer_text(cards: Sequence[str], numbers: Sequence[int], formula: str) -> str:
  """An answer in the SFT target layout: Python-repr lists and a trailing comma."""
  return ANSWER.format(cards=list(cards), numbers=list(numbers), formula=formula)


def expert_formulas(hand: Hand, params: EnvParams) -> list[str]:
  """The solver's formulas an expert may answer with: those Python's float arithmetic also
  takes to the target (so they score +5 in both reward modes), or all of them for the rare
  hand that has none (e.g. 3 3 8 8, whose only solution is 8/(3-8/3))."""
  formulas = solver.solutions(hand.numbers, params.target)
  exact = [f for f in formulas if _float_value(f) == params.target]
  return exact or list(formulas)


def expert_answer(hand: Hand, params: EnvParams,
                  pick: int | np.random.Generator | None = None) -> str:
  """The SFT target for `hand`: the first expert formula by default; `pick` is an index into
  `expert_formulas` or a NumPy Generator drawing one uniformly (SFT data with variety)."""
  formulas = expert_formulas(hand, params)
  if not formulas:
    raise ValueError(f"hand {hand.cards} has no solution for target={params.target}")
  if isinstance(pick, np.random.Generator):
    pick = int(pick.integers(len(formulas)))
  chosen = formulas[pick or 0]
  return answer_text(hand.plain, hand.numbers, f"{chosen}={params.target}")


def _float_value(formula: str):
  try:
    return fm.evaluate(fm.to_rpn(fm.tokenize(formula)), int)
  except ZeroDivisionError:
    return None
