"""`EnvParams`: the GeneralPoints variant, one frozen dataclass (the fields of `config.env`)."""

from __future__ import annotations

import dataclasses
import os

COLORS = ("mixed", "red", "black")
DEALS = ("independent", "deck")
REWARD_MODES = ("paper", "legacy")
PROMPTS = ("reference", "compact")
SUITS = {"mixed": ("H", "S", "D", "C"), "red": ("H", "D"), "black": ("S", "C")}
RANK_CHARS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "T", "J", "Q", "K")  # values 1..13
# The smallest canvas whose cards are still a few pixels wide.
MIN_RESOLUTION = 64
MAX_RESOLUTION = 8192
MAX_FACE_VALUE = 99  # a face card's value is written as one or two digits


@dataclasses.dataclass(frozen=True)
class EnvParams:
  """A GeneralPoints variant. Defaults are the reference's; `configs/gp.py` documents each field."""

  target: int = 24
  face_cards_as_10: bool = True
  face_values: tuple = ()  # (J, Q, K) values; () = the rule face_cards_as_10 names
  ood: bool = False
  color: str = "mixed"
  deal: str = "independent"
  verify_iter: int = 5
  verification: bool = True
  forced_fail_step: bool = True
  reward_mode: str = "paper"
  language_only: bool = True
  resolution: int = 1200
  formula_label: bool = False
  card_assets: str = ""
  prompt: str = "reference"

  def __post_init__(self):
    for name in ("face_cards_as_10", "ood", "verification", "forced_fail_step", "language_only",
                 "formula_label"):
      _require(isinstance(getattr(self, name), bool), name, getattr(self, name), "True or False")
    for name, allowed in (("color", COLORS), ("deal", DEALS), ("reward_mode", REWARD_MODES),
                          ("prompt", PROMPTS)):
      _require(getattr(self, name) in allowed, name, getattr(self, name),
               "one of " + ", ".join(repr(a) for a in allowed))
    _require(_is_int(self.target) and self.target >= 0, "target", self.target,
             "a non-negative integer")
    values = tuple(self.face_values) if isinstance(self.face_values, (tuple, list)) else None
    _require(values == () or (values is not None and len(values) == 3
                              and all(_is_int(v) and 0 <= v <= MAX_FACE_VALUE for v in values)),
             "face_values", self.face_values,
             f"() or three integers in [0, {MAX_FACE_VALUE}] (the values of J, Q and K)")
    object.__setattr__(self, "face_values", values)  # a config's list compares as a tuple
    _require(_is_int(self.verify_iter) and self.verify_iter >= 1, "verify_iter",
             self.verify_iter, "an integer >= 1")
    _require(_is_int(self.resolution) and MIN_RESOLUTION <= self.resolution <= MAX_RESOLUTION,
             "resolution", self.resolution,
             f"an integer in [{MIN_RESOLUTION}, {MAX_RESOLUTION}]")
    _require(isinstance(self.card_assets, str), "card_assets", self.card_assets,
             "a folder path or '' (draw the faces)")
    if self.card_assets:
      missing = [card for card in all_cards() if not os.path.isfile(asset_path(self.card_assets, card))]
      _require(not missing, "card_assets", self.card_assets,
               "a folder holding {S,H,D,C}{A,2..9,T,J,Q,K}.png"
               + (f" (missing {missing[0]}.png)" if missing else ""))

  @property
  def suits(self) -> tuple[str, ...]:
    return SUITS[self.color]

  @property
  def face_numbers(self) -> tuple[int, int, int]:
    """The values of J, Q and K under this variant's rule."""
    if self.face_values:
      return self.face_values
    return (10, 10, 10) if self.face_cards_as_10 else (11, 12, 13)


def all_cards() -> list[str]:
  """Every card name, suit letter + rank character, e.g. 'SK', 'DT', 'HA'."""
  return [suit + rank for suit in SUITS["mixed"] for rank in RANK_CHARS]


def asset_path(folder: str, card: str) -> str:
  return os.path.join(folder, f"{card}.png")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, name: str, value, expected: str):
  if not ok:
    raise ValueError(f"{name}={value!r}: must be {expected}")
