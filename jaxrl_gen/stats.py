"""Paired tests for the study's claims: two phases (say the warm-up `a` and the RL branch `b`)
answered the same evaluation hands, so each hand is a pair of outcomes.

Sign convention, everywhere: the effect is b - a (positive: `b` does better), and of a hand's
discordant outcomes n01 counts the hands `b` solved and `a` did not, n10 the reverse.

    mcnemar(a, b)               exact two-sided McNemar p of paired 0/1 outcomes
    mcnemar_combined(pairs)     the same over several strata (training seeds), pooled
    paired_bootstrap(a, b)      mean(b) - mean(a) and a percentile interval over hands
    seed_test(x, y)             a paired test over training seeds: t-test and exact sign flips
    power_mcnemar(p_a, delta, n_hands)   the exact McNemar test's power for a difference
    hands_for_power(p_a, delta)          the fewest paired hands that reach a target power

NumPy and SciPy only; no JAX.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats as sp_stats

# Relative tolerance of "at least as extreme" comparisons of floating-point statistics.
_TIE = 1e-12
SIGN_FLIP_EXACT_MAX = 16  # up to this many seeds the sign-flip test enumerates every pattern
SIGN_FLIP_DRAWS = 2**16  # past it, this many random patterns (seeded) estimate the p-value


def _pair(a, b, *, binary: bool) -> tuple[np.ndarray, np.ndarray]:
  """`a`, `b` as 1-D float arrays of equal length (only 0/1 when `binary`)."""
  arrays = []
  for name, values in (("a", a), ("b", b)):
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
      raise ValueError(f"{name}: a 1-D sequence of per-hand outcomes, got shape {x.shape}")
    if binary and not np.isin(x, (0.0, 1.0)).all():
      bad = x[~np.isin(x, (0.0, 1.0))][:3].tolist()
      raise ValueError(f"{name}: outcomes must be 0 or 1 (success), got {bad}")
    if not np.isfinite(x).all():
      raise ValueError(f"{name}: values must be finite")
    arrays.append(x)
  if len(arrays[0]) != len(arrays[1]):
    raise ValueError(f"paired outcomes: a has {len(arrays[0])} values, b has {len(arrays[1])};"
                     " they must be the same hands in the same order")
  return arrays[0], arrays[1]


def discordant(a, b) -> tuple[int, int]:
  """(n01, n10): hands only `b` solved, hands only `a` solved (0/1 outcomes, same hands)."""
  x, y = _pair(a, b, binary=True)
  return int(np.sum((x == 0) & (y == 1))), int(np.sum((x == 1) & (y == 0)))


def exact_mcnemar_p(n01: int, n10: int) -> float:
  """min(1, 2 P(X <= min(n01, n10))), X ~ Binomial(n01 + n10, 1/2); 1 without discordance."""
  if n01 < 0 or n10 < 0:
    raise ValueError(f"discordant counts must be non-negative, got {n01}, {n10}")
  total = n01 + n10
  if total == 0:
    return 1.0
  return float(min(1.0, 2.0 * sp_stats.binom.cdf(min(n01, n10), total, 0.5)))


def mcnemar(a, b) -> float:
  """The exact two-sided McNemar p-value of paired 0/1 outcomes on the same hands: under H0
  (neither phase better) each discordant hand is equally likely to favour either, so n01 given
  n01 + n10 is Binomial(n01 + n10, 1/2). Concordant hands carry no information."""
  return exact_mcnemar_p(*discordant(a, b))


def mcnemar_combined(pairs: Iterable[tuple[Sequence, Sequence]]) -> float:
  """The exact McNemar test over several strata (one (a, b) pair of outcome arrays per
  training seed), on the pooled discordant counts.

  Why pooling is valid: under H0 every discordant hand, in every stratum, is equally likely
  to be 01 or 10, whatever that stratum's own discordance rate (the test conditions on the
  number of discordant hands, so the strata's different success rates and discordance
  rates drop out). Given the strata's discordant totals, the pooled n01 is then a sum of
  independent Binomial(D_s, 1/2), i.e. Binomial(sum D_s, 1/2): the one-stratum exact test
  applies to the sums. (This is the exact form of the Mantel-Haenszel test for matched
  pairs.) It weights strata by their discordant hands, and it assumes hands are independent
  given the models, not that the seeds' effects are equal: a seed-level claim is
  `seed_test`'s."""
  n01 = n10 = 0
  count = 0
  for a, b in pairs:
    d01, d10 = discordant(a, b)
    n01, n10, count = n01 + d01, n10 + d10, count + 1
  if not count:
    raise ValueError("mcnemar_combined: no strata given")
  return exact_mcnemar_p(n01, n10)


def paired_bootstrap(a, b, n: int = 10000, seed: int = 0, level: float = 0.95) -> dict:
  """The effect mean(b) - mean(a) (positive: `b` better) and its percentile bootstrap
  interval: `n` resamples of the hands with replacement, the same resampled indices for `a`
  and `b` (paired), drawn from `numpy.random.default_rng(seed)`. Works for 0/1 outcomes or
  any real per-hand values. Returns {effect, low, high, level, resamples, hands}."""
  x, y = _pair(a, b, binary=False)
  if not len(x):
    raise ValueError("paired_bootstrap: no hands")
  if n < 1 or not 0 < level < 1:
    raise ValueError(f"paired_bootstrap: n={n} must be >= 1 and level={level} in (0, 1)")
  diff = y - x
  rng = np.random.default_rng(seed)
  means = np.empty(n)
  chunk = max(1, 2**22 // len(diff))  # resamples per block: about 32 MB of indices
  for start in range(0, n, chunk):
    size = min(chunk, n - start)
    means[start:start + size] = diff[rng.integers(0, len(diff), size=(size, len(diff)))].mean(1)
  low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
  return {"effect": float(diff.mean()), "low": float(low), "high": float(high),
          "level": level, "resamples": n, "hands": len(diff)}


def sign_flip_p(differences, seed: int = 0) -> float:
  """The two-sided sign-flip permutation p-value of paired differences: the share of sign
  patterns whose |mean| is at least the observed one. Exact (every one of 2^n patterns) for
  n <= 16; past that, the observed pattern and SIGN_FLIP_DRAWS random ones (seeded)."""
  d = np.asarray(differences, dtype=float)
  observed = abs(d.mean())
  if len(d) <= SIGN_FLIP_EXACT_MAX:
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    extreme = np.abs(signs @ d / len(d)) >= observed * (1 - _TIE)
    return float(extreme.mean())
  signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(SIGN_FLIP_DRAWS, len(d)))
  extreme = np.abs(signs @ d / len(d)) >= observed * (1 - _TIE)
  return float((1 + extreme.sum()) / (1 + SIGN_FLIP_DRAWS))


def seed_test(x, y) -> dict:
  """A paired test over training seeds: x[i], y[i] are the two phases' scores of seed i.
  Returns {mean_difference (mean of y - x), t_p (the paired t-test's two-sided p, SciPy),
  sign_flip_p (the exact sign-flip permutation p, `sign_flip_p`), seeds}.

  With zero variance of the differences the t statistic is undefined: all differences equal
  and nonzero give t_p = 0.0, all zero give t_p = 1.0.

  The sign-flip test assumes only that each seed's difference is symmetric about 0 under H0;
  its p-values are multiples of 2 / 2^n, so with 5 seeds the smallest two-sided p is
  2/32 = 1/16 = 0.0625 (every seed moving the same way): 5 seeds cannot reach p < 0.05 by it.
  With 3 seeds the floor is 1/4."""
  a, b = _pair(x, y, binary=False)
  if len(a) < 2:
    raise ValueError(f"seed_test: needs at least 2 seeds, got {len(a)}")
  d = b - a
  if np.ptp(d) <= _TIE * max(1.0, float(np.abs(d).max())):
    t_p = 1.0 if np.allclose(d, 0.0) else 0.0
  else:
    t_p = float(sp_stats.ttest_rel(b, a).pvalue)
  return {"mean_difference": float(d.mean()), "t_p": t_p, "sign_flip_p": sign_flip_p(d),
          "seeds": len(d)}


def _cell_rates(p_a: float, delta: float, discordance: float | None) -> tuple[float, float]:
  """(P(b wins a hand a loses), P(a wins a hand b loses)) for success rates p_a and
  p_a + delta at the given discordance (default: outcomes independent on a hand)."""
  p_b = p_a + delta
  if not (0 <= p_a <= 1 and 0 <= p_b <= 1):
    raise ValueError(f"p_a={p_a} and p_a + delta={p_b} must be success rates in [0, 1]")
  d = p_a * (1 - p_b) + p_b * (1 - p_a) if discordance is None else discordance
  p01, p10 = (d + delta) / 2, (d - delta) / 2
  if not (p01 >= -_TIE and p10 >= -_TIE and p01 <= 1 - p_a + _TIE and p10 <= p_a + _TIE):
    raise ValueError(f"discordance={d}: impossible with p_a={p_a}, delta={delta} (needs "
                     f"|delta| <= discordance, P(01) <= 1 - p_a and P(10) <= p_a)")
  return max(p01, 0.0), max(p10, 0.0)


def power_mcnemar(p_a: float, delta: float, n_hands: int, alpha: float = 0.05,
                  discordance: float | None = None) -> float:
  """The power of the exact two-sided McNemar test (`mcnemar`) at level `alpha` on
  `n_hands` paired hands, when phase `a` solves a hand with probability p_a and phase `b`
  with p_a + delta.

  The assumption: hands are independent, and a hand is discordant with probability
  `discordance` (a = 0, b = 1 with (discordance + delta) / 2; a = 1, b = 0 with
  (discordance - delta) / 2). By default discordance = p_a (1 - p_b) + p_b (1 - p_a), the
  rate if the two phases' outcomes on a hand were independent; phases that share an init
  agree on more hands than that, which lowers the discordance and raises the power, so pass
  the measured rate (discordant hands / hands) where there is one.

  Computed exactly: the number of discordant hands D ~ Binomial(n_hands, discordance); given
  D = m the test rejects when min(n01, n10) <= c_m, the largest c with
  2 P(Binomial(m, 1/2) <= c) <= alpha, and n01 ~ Binomial(m, P(01) / discordance). Power is
  the sum over m (rejections in either direction)."""
  if n_hands < 0 or not 0 < alpha < 1:
    raise ValueError(f"n_hands={n_hands} must be >= 0 and alpha={alpha} in (0, 1)")
  p01, p10 = _cell_rates(p_a, delta, discordance)
  d = p01 + p10
  if n_hands == 0 or d == 0:
    return 0.0
  m = np.arange(1, n_hands + 1)
  c = sp_stats.binom.ppf(alpha / 2, m, 0.5)  # the smallest c with P(X <= c) >= alpha / 2
  c = np.where(sp_stats.binom.cdf(c, m, 0.5) <= alpha / 2 * (1 + 1e-9), c, c - 1)
  q = p01 / d
  reject = np.where(c >= 0, sp_stats.binom.cdf(c, m, q) + sp_stats.binom.sf(m - c - 1, m, q),
                    0.0)
  return float(np.sum(sp_stats.binom.pmf(m, n_hands, d) * reject))


def hands_for_power(p_a: float, delta: float, power: float = 0.8, alpha: float = 0.05,
                    discordance: float | None = None, max_hands: int = 10**6) -> int:
  """The fewest paired hands at which `power_mcnemar` reaches `power` (same assumptions).

  An exact test's power is not monotone in the number of hands (it saw-tooths with the
  discrete critical values); this is the smallest n found by doubling to a first n that
  reaches it, bisecting below, and stepping down while the previous n still reaches it.
  ValueError past `max_hands` (an effect too small to detect)."""
  if not 0 < power < 1:
    raise ValueError(f"power={power}: must be in (0, 1)")
  if delta == 0:
    raise ValueError("delta=0: no number of hands detects no difference")

  def enough(n: int) -> bool:
    return power_mcnemar(p_a, delta, n, alpha, discordance) >= power

  low, high = 0, 1  # low: the last n checked that does not reach it
  while not enough(high):
    if high >= max_hands:
      raise ValueError(f"hands_for_power: over max_hands={max_hands} hands for "
                       f"delta={delta} at p_a={p_a}")
    low, high = high, min(2 * high, max_hands)
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (low, middle) if enough(middle) else (middle, high)
  while high > 1 and enough(high - 1):
    high -= 1
  return high


def describe_p(p: float) -> str:
  """A p-value as a report prints it: 3 significant digits, '<1e-4' below that, '0' for an
  exact 0 (`seed_test`'s t_p when every seed moved by the same nonzero amount)."""
  if math.isnan(p):
    return "-"
  if p == 0:
    return "0"
  return "<1e-4" if p < 1e-4 else f"{p:.3g}"
