"""The reference's GP prompts (byte for byte: the checkpoints were trained on them) and the
expert answer format of its SFT data (`reference.md` §2.5, §2.6); and a compact template
(`EnvParams.prompt='compact'`) for models trained from scratch on a CPU, which states the same
rule, target and cards in a tenth of the tokens:

    J=10 Q=10 K=10. Target 24. Cards: A, 3, K, 6.
    {"number": [1, 3, 10, 6], "formula": "10*3-6*1=24"}

(GP-VL: "Cards in the image." and a "cards" field first, which the recognition check reads.)
"""

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
COMPACT_L = "J={j} Q={q} K={k}. Target {target}. Cards: {cards}."
COMPACT_VL = "J={j} Q={q} K={k}. Target {target}. Cards in the image."
COMPACT_ANSWER_L = '{{"number": {numbers}, "formula": "{formula}"}}'
COMPACT_ANSWER_VL = '{{"cards": {cards}, "number": {numbers}, "formula": "{formula}"}}'


def face_card_message(params: EnvParams) -> str:
  """The rule sentence of the reference prompt; any (J, Q, K) values other than the two
  reference rules are written in the 11/12/13 sentence's form."""
  values = params.face_numbers
  if values == (10, 10, 10):
    return FACE_CARDS_AS_10
  j, q, k = (f"'{v}'" for v in values)
  return f"'J', 'Q', and 'K' count as {j}, {q}, and {k} respectively."


def prompt(hand: Hand, params: EnvParams) -> str:
  """The first user message: GP-L lists the cards, GP-VL refers to the image."""
  if params.prompt == "compact":
    j, q, k = params.face_numbers
    template = COMPACT_L if params.language_only else COMPACT_VL
    return template.format(j=j, q=q, k=k, target=params.target, cards=", ".join(hand.plain))
  template = PROMPT_L if params.language_only else PROMPT_VL
  return template.format(target=params.target, face=face_card_message(params),
                         cards=list(hand.plain))


def answer_text(cards: Sequence[str], numbers: Sequence[int], formula: str,
                params: EnvParams | None = None) -> str:
  """An answer in the SFT target layout of `params.prompt`: the reference's (Python-repr lists
  and a trailing comma; the default) or the compact one."""
  template = ANSWER
  if params is not None and params.prompt == "compact":
    template = COMPACT_ANSWER_L if params.language_only else COMPACT_ANSWER_VL
  return template.format(cards=list(cards), numbers=list(numbers), formula=formula)


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
  return answer_text(hand.plain, hand.numbers, f"{chosen}={params.target}", params)


def _float_value(formula: str):
  try:
    return fm.evaluate(fm.to_rpn(fm.tokenize(formula)), int)
  except ZeroDivisionError:
    return None
