"""The paired tests of `jaxrl_gen.stats` against hand-computed values."""

import math

import numpy as np
import pytest
from scipy import stats as sp_stats

from jaxrl_gen import stats


def outcomes(n01: int, n10: int, both: int = 3, neither: int = 4):
  """Paired 0/1 outcomes with the given discordant counts (n01: only b solved)."""
  a = [0] * n01 + [1] * n10 + [1] * both + [0] * neither
  b = [1] * n01 + [0] * n10 + [1] * both + [0] * neither
  return a, b


@pytest.mark.parametrize("n01, n10, expected", [
    (0, 5, 2 / 32),  # 2 P(X <= 0), X ~ Bin(5, 1/2)
    (5, 0, 2 / 32),
    (1, 9, 2 * (1 + 10) / 1024),
    (0, 0, 1.0),  # no discordant hands
    (3, 3, 1.0),  # 2 (1 + 6 + 15 + 20) / 64 > 1: capped
    (0, 1, 1.0),
])
def test_mcnemar_hand_computed(n01, n10, expected):
  a, b = outcomes(n01, n10)
  assert stats.discordant(a, b) == (n01, n10)
  assert stats.mcnemar(a, b) == pytest.approx(expected, rel=1e-12)
  assert stats.mcnemar(np.array(a, bool), np.array(b, bool)) == pytest.approx(expected)


def test_mcnemar_combined_pools_the_discordant_counts():
  strata = [outcomes(0, 2), outcomes(0, 3, both=0, neither=7)]
  assert [stats.mcnemar(a, b) for a, b in strata] == [0.5, 0.25]
  assert stats.mcnemar_combined(strata) == pytest.approx(2 / 32)  # (0, 5) pooled
  assert stats.mcnemar_combined([outcomes(1, 4), outcomes(4, 1)]) == 1.0  # (5, 5)
  with pytest.raises(ValueError, match="no strata"):
    stats.mcnemar_combined([])


def test_input_validation():
  with pytest.raises(ValueError, match="same hands"):
    stats.mcnemar([0, 1, 1], [0, 1])
  with pytest.raises(ValueError, match="0 or 1"):
    stats.mcnemar([0, 2], [0, 1])
  with pytest.raises(ValueError, match="0 or 1"):
    stats.mcnemar([0, 1], [0.5, 1])
  with pytest.raises(ValueError, match="1-D"):
    stats.mcnemar([[0, 1]], [[0, 1]])
  with pytest.raises(ValueError, match="same hands"):
    stats.paired_bootstrap([0.1, 0.2], [0.3])
  with pytest.raises(ValueError, match="finite"):
    stats.paired_bootstrap([0.1, float("nan")], [0.3, 0.2])
  with pytest.raises(ValueError, match="at least 2 seeds"):
    stats.seed_test([0.1], [0.2])
  with pytest.raises(ValueError, match="same hands"):
    stats.seed_test([0.1, 0.2], [0.2, 0.3, 0.4])


def test_paired_bootstrap_interval_holds_the_true_difference_and_is_seeded():
  rng = np.random.default_rng(7)
  a = (rng.random(400) < 0.3).astype(int)
  b = a.copy()
  gains = np.flatnonzero(a == 0)[:60]  # b also solves 60 hands a missed: +0.15
  b[gains] = 1
  out = stats.paired_bootstrap(a, b, n=2000, seed=3)
  assert out["effect"] == pytest.approx(0.15)
  assert 0 < out["low"] < 0.15 < out["high"] < 0.3
  assert (out["level"], out["resamples"], out["hands"]) == (0.95, 2000, 400)
  assert stats.paired_bootstrap(a, b, n=2000, seed=3) == out
  assert stats.paired_bootstrap(a, b, n=2000, seed=4) != out
  reverse = stats.paired_bootstrap(b, a, n=2000, seed=3)  # effect = b - a: the sign flips
  assert reverse["effect"] == pytest.approx(-0.15)
  assert reverse["low"] == pytest.approx(-out["high"])
  assert reverse["high"] == pytest.approx(-out["low"])


def test_paired_bootstrap_resamples_pairs_not_each_side():
  """b = a + 0.25 on every hand: resampled in pairs, every resample's difference is 0.25
  (independent resampling of a and b would spread it)."""
  a = np.random.default_rng(0).normal(size=300)
  out = stats.paired_bootstrap(a, a + 0.25, n=500)
  assert out["effect"] == out["low"] == pytest.approx(0.25)
  assert out["high"] == pytest.approx(0.25)


def test_seed_test_t_p_hand_computed():
  # d = 1, 2, 3: mean 2, sd 1, t = 2 sqrt(3); Student t with 2 dof has
  # F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so the two-sided p is 1 - t / sqrt(2 + t^2).
  t = 2 * math.sqrt(3)
  out = stats.seed_test([0, 0, 0], [1, 2, 3])
  assert out["mean_difference"] == pytest.approx(2.0)
  assert out["t_p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
  assert out["t_p"] == pytest.approx(0.0741799, rel=1e-5)
  assert out["sign_flip_p"] == pytest.approx(2 / 8)  # all +, all -
  assert out["seeds"] == 3


def test_seed_test_zero_variance_and_sign_flips():
  same = stats.seed_test([0.1] * 4, [0.3] * 4)
  assert same["t_p"] == 0.0 and same["mean_difference"] == pytest.approx(0.2)
  zero = stats.seed_test([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
  assert zero["t_p"] == 1.0 and zero["sign_flip_p"] == 1.0
  up = stats.seed_test([0.1, 0.2, 0.1, 0.3, 0.2], [0.2, 0.5, 0.15, 0.4, 0.6])
  assert up["sign_flip_p"] == pytest.approx(2 / 32)  # the 5-seed floor: 1/16
  # +1 four times, -1 once: |sum| >= 3 for the 2 x (1 + 5) patterns with at most one odd sign.
  assert stats.sign_flip_p([1, 1, 1, 1, -1]) == pytest.approx(12 / 32)
  assert stats.seed_test([0, 0, 0, 0, 0], [1, 1, 1, 1, -1])["sign_flip_p"] == pytest.approx(12 / 32)


def test_sign_flip_past_16_seeds_is_estimated_and_seeded():
  d = np.linspace(0.1, 1.0, 20)
  p = stats.sign_flip_p(d)
  assert p == stats.sign_flip_p(d) and 0 < p < 1e-3  # about 2 / 2^20 plus the observed draw


def brute_power(p_a, delta, n, alpha, discordance):
  """The power by summing the multinomial over every (n01, n10)."""
  p01, p10 = (discordance + delta) / 2, (discordance - delta) / 2
  total = 0.0
  for n01 in range(n + 1):
    for n10 in range(n - n01 + 1):
      if stats.exact_mcnemar_p(n01, n10) <= alpha:
        total += sp_stats.multinomial.pmf([n01, n10, n - n01 - n10], n,
                                          [p01, p10, 1 - p01 - p10])
  return total


@pytest.mark.parametrize("p_a, delta, n, discordance", [
    (0.3, 0.1, 20, None), (0.3, -0.1, 17, 0.2), (0.1, 0.05, 25, 0.08), (0.5, 0.2, 12, None)])
def test_power_mcnemar_matches_enumeration(p_a, delta, n, discordance):
  d = discordance if discordance is not None else (
      p_a * (1 - p_a - delta) + (p_a + delta) * (1 - p_a))
  assert stats.power_mcnemar(p_a, delta, n, discordance=discordance) == pytest.approx(
      brute_power(p_a, delta, n, 0.05, d), abs=1e-12)


def test_power_hand_computed_and_hands_for_power():
  # Every hand discordant the same way (p_a 0, p_b 1): n01 = n; 2 / 2^n <= 0.05 needs n >= 6.
  assert stats.power_mcnemar(0.0, 1.0, 5) == 0.0
  assert stats.power_mcnemar(0.0, 1.0, 6) == pytest.approx(1.0)
  assert stats.hands_for_power(0.0, 1.0) == 6
  n = stats.hands_for_power(0.2, 0.1, discordance=0.15)
  assert stats.power_mcnemar(0.2, 0.1, n, discordance=0.15) >= 0.8
  assert stats.power_mcnemar(0.2, 0.1, n - 1, discordance=0.15) < 0.8
  # Less discordance (phases agreeing on more hands) needs fewer hands for the same delta.
  assert stats.hands_for_power(0.2, 0.1, discordance=0.12) < n < stats.hands_for_power(0.2, 0.1)
  with pytest.raises(ValueError, match="impossible"):
    stats.power_mcnemar(0.2, 0.1, 50, discordance=0.05)  # |delta| > discordance
  with pytest.raises(ValueError, match="success rates"):
    stats.power_mcnemar(0.95, 0.1, 50)
  with pytest.raises(ValueError, match="max_hands"):
    stats.hands_for_power(0.2, 0.001, max_hands=64)


def test_describe_p():
  assert [stats.describe_p(p) for p in (0.0, 3e-5, 0.012345, 1.0, float("nan"))] == [
      "0", "<1e-4", "0.0123", "1", "-"]
