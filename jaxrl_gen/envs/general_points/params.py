"""`EnvParams`: the GeneralPoints variant, one frozen dataclass (the fields of `config.env`)."""

from __future__ import annotations

import dataclasses
import os

COLORS = ("mixed", "red", "black")
DEALS = ("independent", "deck")
REWARD_MODES = ("paper", "legacy")
SUITS = {"mixed": ("H", "S", "D", "C"), "red": ("H", "D"), "black": ("S", "C")}
RANK_CHARS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "T", "J", "Q", "K")  # values 1..13
# The smallest canvas whose cards are still a few pixels wide.
MIN_RESOLUTION = 64
MAX_RESOLUTION = 8192


@dataclasses.dataclass(frozen=True)
class EnvParams:
  """A GeneralPoints variant. Defaults are the reference's; `configs/gp.py` documents each field."""

  target: int = 24
  face_cards_as_10: bool = True
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

  def __post_init__(self):
    for name in ("face_cards_as_10", "ood", "verification", "forced_fail_step", "language_only",
                 "formula_label"):
      _require(isinstance(getattr(self, name), bool), name, getattr(self, name), "True or False")
    for name, allowed in (("color", COLORS), ("deal", DEALS), ("reward_mode", REWARD_MODES)):
      _require(getattr(self, name) in allowed, name, getattr(self, name),
               "one of " + ", ".join(repr(a) for a in allowed))
    _require(_is_int(self.target) and self.target >= 0, "target", self.target,
             "a non-negative integer")
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
