"""Dealing hands: the distributions, the representations, determinism per key."""

import collections

import jax
import numpy as np
import pytest

from jaxrl_gen.envs import general_points as gp


def test_hand_representations():
  hand = gp.Hand.from_cards(("SK", "DT", "HA", "C5"))
  assert hand.plain == ("K", "10", "A", "5")
  assert hand.numbers == (10, 10, 1, 5)
  assert hand.values == (13, 10, 1, 5)
  assert gp.Hand.from_cards(("SK", "DT", "HA", "C5"), face_cards_as_10=False).numbers == (13, 10, 1, 5)
  for bad in (("SK", "DT", "HA"), ("SK", "DT", "HA", "X5"), ("SK", "DT", "HA", "S1")):
    with pytest.raises(ValueError, match="four names"):
      gp.Hand.from_cards(bad)


def test_deals_are_solvable_and_follow_the_rule():
  for face_10 in (True, False):
    params = gp.EnvParams(face_cards_as_10=face_10)
    for seed in range(100):
      hand = gp.deal(seed, params)
      assert gp.solve(hand.numbers)
      expected = tuple(min(v, 10) if face_10 else v for v in hand.values)
      assert hand.numbers == expected
      assert gp.Hand.from_cards(hand.cards, face_10) == hand


def test_ood_hands_always_hold_a_face_card():
  for deal in ("independent", "deck"):
    params = gp.EnvParams(face_cards_as_10=False, ood=True, deal=deal)
    hands = [gp.deal(seed, params) for seed in range(300)]
    assert all(any(v >= 11 for v in hand.values) for hand in hands)
    # the face card is shuffled in: it is not always in the same place
    assert len({next(i for i, v in enumerate(h.values) if v >= 11) for h in hands}) == 4


@pytest.mark.parametrize("color, suits", [("mixed", "HSDC"), ("red", "HD"), ("black", "SC")])
def test_suits_follow_the_colour(color, suits):
  for deal in ("independent", "deck"):
    params = gp.EnvParams(color=color, deal=deal)
    seen = collections.Counter(card[0] for seed in range(200) for card in gp.deal(seed, params).cards)
    assert set(seen) == set(suits)


def test_deck_deals_distinct_cards_independent_deals_repeat():
  deck = gp.EnvParams(deal="deck", color="black")  # 26 cards: repeats would be common
  assert all(len(set(gp.deal(seed, deck).cards)) == 4 for seed in range(300))
  independent = gp.EnvParams(color="black")
  assert any(len(set(gp.deal(seed, independent).cards)) < 4 for seed in range(300))


def test_values_are_roughly_uniform():
  params = gp.EnvParams()
  counts = collections.Counter(v for seed in range(600) for v in gp.deal(seed, params).values)
  assert set(counts) == set(range(1, 14))
  assert max(counts.values()) < 3 * min(counts.values())


def test_deterministic_per_key():
  params = gp.EnvParams(language_only=False, color="black")
  assert gp.deal(7, params) == gp.deal(7, params)
  assert gp.deal(jax.random.key(7), params) == gp.deal(jax.random.PRNGKey(7), params)
  assert gp.deal(np.random.default_rng(7), params) == gp.deal(7, params)
  assert len({gp.deal(seed, params).cards for seed in range(50)}) > 45
  keys = jax.random.split(jax.random.key(0), 8)
  assert len({gp.deal(k, params).cards for k in keys}) == 8


def test_normalize_rank():
  assert [gp.normalize_rank(r) for r in ("T", "ten", " 'k' ", "1", "Ace", "queen", "7", "x")] == [
      "10", "10", "K", "A", "A", "Q", "7", "X"]


def test_an_unreachable_target_is_a_clear_error(monkeypatch):
  from jaxrl_gen.envs.general_points import cards
  monkeypatch.setattr(cards, "MAX_DRAWS", 50)
  with pytest.raises(ValueError, match="no solvable hand for target=100000"):
    gp.deal(0, gp.EnvParams(target=100_000))
