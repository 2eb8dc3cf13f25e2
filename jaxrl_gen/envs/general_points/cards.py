"""Hands of four cards: their representations, and dealing a solvable one."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxrl_gen.envs import core
from jaxrl_gen.envs.general_points import solver
from jaxrl_gen.envs.general_points.params import RANK_CHARS, EnvParams

FACE_VALUES = (11, 12, 13)  # the raw ranks of J, Q and K
# Redraws before `deal` gives up (only a target that almost no hand reaches gets there; after
# the few thousand distinct hands the solver cache answers every redraw at once).
MAX_DRAWS = 100_000

# Spellings a model may use for a rank, normalised before the recognition check (upper-cased
# first). 'T' is the reference's own rank character for ten, '1' is the ace's value.
_RANK_ALIASES = {"T": "10", "TEN": "10", "1": "A", "ACE": "A", "JACK": "J", "QUEEN": "Q",
                 "KING": "K"}


@dataclasses.dataclass(frozen=True)
class Hand:
  """Four cards. `values` are the raw ranks 1..13 (A=1, J=11, Q=12, K=13)."""

  cards: tuple[str, ...]  # suit + rank character, e.g. ('SK', 'DT', 'HA', 'C5')
  plain: tuple[str, ...]  # rank strings, ten written '10', e.g. ('K', '10', 'A', '5')
  numbers: tuple[int, ...]  # the values the rule assigns (J/Q/K -> 10 under face=10)
  values: tuple[int, ...]

  @classmethod
  def from_cards(cls, cards, face_cards_as_10: bool = True,
                 face_values: tuple[int, ...] = ()) -> "Hand":
    """The hand of card names such as 'SK' or 'DT' under a face-card rule: J/Q/K count
    `face_values` when given, else 10 (`face_cards_as_10`) or 11/12/13."""
    cards = tuple(cards)
    if len(cards) != 4 or any(not isinstance(c, str) or len(c) != 2 or c[0] not in "HSDC"
                              or c[1] not in RANK_CHARS for c in cards):
      raise ValueError(f"cards={cards!r}: must be four names like 'SK', 'DT', 'HA', 'C5'")
    values = tuple(RANK_CHARS.index(c[1]) + 1 for c in cards)
    return cls(
        cards=cards,
        plain=tuple(rank_name(v) for v in values),
        numbers=tuple(rule_number(v, tuple(face_values) or face_cards_as_10) for v in values),
        values=values,
    )


def rank_name(value: int) -> str:
  """The rank string of a value 1..13 as the prompts write it: 'A', '2'..'10', 'J', 'Q', 'K'."""
  char = RANK_CHARS[value - 1]
  return "10" if char == "T" else char


def rule_number(value: int, rule: bool | tuple[int, ...]) -> int:
  """A rank's value: J/Q/K take the rule's (J, Q, K) values, or 10 when `rule` is True (the ID
  rule) and their ranks 11/12/13 when False."""
  if isinstance(rule, tuple):
    return rule[value - FACE_VALUES[0]] if value in FACE_VALUES else value
  return min(value, 10) if rule else value


def normalize_rank(text: str) -> str:
  """A recognised rank in the prompt's spelling: case-insensitive, 'T'/'ten' -> '10', '1'/'ace'
  -> 'A', 'jack'/'queen'/'king' -> 'J'/'Q'/'K'; anything else is kept (and will not match)."""
  word = text.strip().strip("'\"").strip().upper()
  return _RANK_ALIASES.get(word, word)


def deal(key_or_rng: Any, params: EnvParams) -> Hand:
  """A solvable hand for `params`, drawn from a key (int or JAX key) or a NumPy Generator.

  deal='independent' (the reference code): each value uniform in 1..13, each suit uniform over
  the colour's suits, so repeats (even of the same card) happen; with `ood`, three values are
  uniform in 1..13 and one uniform in J/Q/K, in shuffled order.
  deal='deck' (the paper's text): four distinct cards from the deck of the colour's suits;
  with `ood`, one card is drawn uniformly from that deck's J/Q/K and three from the rest of the
  deck, in shuffled order (as the code's ood draw, a hand is weighted by its face-card count).
  Unsolvable hands are redrawn, from the same generator.
  """
  rng = key_or_rng if isinstance(key_or_rng, np.random.Generator) else core.rng(key_or_rng)
  draw = _draw_deck if params.deal == "deck" else _draw_independent
  for _ in range(MAX_DRAWS):
    hand = Hand.from_cards(draw(rng, params), face_values=params.face_numbers)
    if solver.solutions(hand.numbers, params.target):
      return hand
  raise ValueError(f"no solvable hand for target={params.target} under these rules after "
                   f"{MAX_DRAWS} draws")


def _draw_independent(rng: np.random.Generator, params: EnvParams) -> list[str]:
  if params.ood:
    values = [int(v) for v in rng.integers(1, 14, size=3)] + [int(rng.choice(FACE_VALUES))]
    values = [values[i] for i in rng.permutation(4)]
  else:
    values = [int(v) for v in rng.integers(1, 14, size=4)]
  suits = [params.suits[i] for i in rng.integers(0, len(params.suits), size=4)]
  return [suit + RANK_CHARS[v - 1] for suit, v in zip(suits, values)]


def _draw_deck(rng: np.random.Generator, params: EnvParams) -> list[str]:
  deck = [suit + rank for suit in params.suits for rank in RANK_CHARS]
  if not params.ood:
    return [deck[i] for i in rng.choice(len(deck), size=4, replace=False)]
  faces = [card for card in deck if card[1] in "JQK"]
  face = faces[int(rng.integers(len(faces)))]
  rest = [card for card in deck if card != face]
  hand = [face] + [rest[i] for i in rng.choice(len(rest), size=3, replace=False)]
  return [hand[i] for i in rng.permutation(4)]
