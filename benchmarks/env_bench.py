"""Environment throughput on one CPU core: what the host side of an RL step costs.

    python benchmarks/env_bench.py [--env gp] [--seconds 2]

GeneralPoints figures: verifier answers/s per reward mode over a fixed mix of correct, wrong,
malformed and hostile answers (one in five hostile), and over each part alone; solver hands/s
with a cold cache (every distinct hand of ranks 1..13 solved once); deals/s (warm solver cache,
as in training) and resets/s for GP-L and GP-VL (the VL reset renders the 1200x1200 image from
cached card faces). V-IRL figures (`benchmarks/virl_bench.py`): env steps/s of the scripted
expert on the default synthetic city (V-IRL-L, and V-IRL-VL rendering a 2x2 grid per step) and
perspective views/s, next to a per-pixel remap peer. Each environment registers a function in
`BENCHES` returning (name, count, seconds, unit) rows.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shlex
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from jaxrl_gen.envs import general_points as gp  # noqa: E402
from jaxrl_gen.envs.general_points import solver  # noqa: E402


def timed(fn: Callable[[], int], seconds: float) -> tuple[int, float]:
  """Calls `fn` (which returns how many items it did) until `seconds` have passed."""
  count, start = 0, time.perf_counter()
  while True:
    count += fn()
    elapsed = time.perf_counter() - start
    if elapsed >= seconds:
      return count, elapsed


# The worst answers we know: 64K-character formulas, deep nesting, huge numbers, code.
HOSTILE = [
      '{"formula": "' + "(" * 10_000 + "1+2" + ")" * 10_000 + '"}',
      "x" * (1 << 20),
      '{"formula": "9**9**9**9=24"}',
      '{"formula": "__import__(\'os\').system(\'x\')"}',
      '{"formula": "\u0663*\u0668=24"}',
      '"cards": [' * 50_000,
      '{"formula": "' + "1" * 5000 + '/0=24"}',
      '{"formula": "' + "+" * 60_000 + '"}',
]


def gp_answer_mix(hands: list, params, hostile: bool = True) -> list[tuple]:
  """(answer, hand) pairs: per hand a correct, a wrong-value, a wrong-number and a malformed
  answer, and (with `hostile`) one of `HOSTILE` in turn."""
  mix = []
  for i, hand in enumerate(hands):
    n = hand.numbers
    mix += [
        (gp.expert_answer(hand, params), hand),
        (gp.answer_text(hand.plain, n, f"{n[0]}+{n[1]}+{n[2]}+{n[3]}=24"), hand),
        (gp.answer_text(hand.plain, n, f"{n[0]}*{n[1]}+{n[2]}=24"), hand),
        (gp.answer_text(hand.plain, n, f"({n[0]}+{n[1]}*x{n[2]})-{n[3]}=24"), hand),
    ]
    if hostile:
      mix.append((HOSTILE[i % len(HOSTILE)], hand))
  return mix


def gp_benchmarks(seconds: float) -> list[tuple[str, int, float, str]]:
  rows = []
  rng = np.random.default_rng(0)
  for mode in ("paper", "legacy"):
    params = gp.EnvParams(reward_mode=mode)
    hands = [gp.deal(rng, params) for _ in range(64)]
    mixes = {"answer mix": gp_answer_mix(hands, params),
             "no hostile": gp_answer_mix(hands, params, hostile=False),
             "hostile only": [(answer, hands[0]) for answer in HOSTILE]}
    for name, mix in mixes.items():
      def verify_all(mix=mix, params=params):
        for answer, hand in mix:
          gp.verify(answer, hand, params)
        return len(mix)
      rows.append((f"verify ({mode}, {name})", *timed(verify_all, seconds), "answers"))

  multisets = list(itertools.combinations_with_replacement(range(1, 14), 4))

  def solve_cold():
    solver._solve_sorted.cache_clear()
    for numbers in multisets:
      solver.solutions(numbers, 24)
    return len(multisets)
  rows.append(("solve (cold cache)", *timed(solve_cold, seconds), "hands"))

  params = gp.EnvParams()
  for numbers in multisets:  # warm: training deals from a cache that fills in seconds
    solver.solutions(tuple(min(v, 10) for v in numbers), 24)
  seeds = itertools.count()
  rows.append(("deal (warm cache)",
               *timed(lambda: (gp.deal(next(seeds), params), 1)[1], seconds), "hands"))
  for name, variant in (("reset GP-L", params), ("reset GP-VL (renders)",
                                                 gp.EnvParams(language_only=False, color="black"))):
    rows.append((name, *timed(lambda v=variant: (gp.reset(next(seeds), v), 1)[1], seconds),
                 "episodes"))
  return rows


def virl_benchmarks(seconds: float) -> list[tuple[str, int, float, str]]:
  import virl_bench  # beside this file; imported late: it generates the synthetic city

  return virl_bench.rows(seconds)


BENCHES = {"gp": gp_benchmarks, "virl": virl_benchmarks}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", choices=sorted(BENCHES), action="append")
  parser.add_argument("--seconds", type=float, default=2.0, help="time per figure")
  args = parser.parse_args(argv)
  pinned = hasattr(os, "sched_setaffinity")
  if pinned:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  print(f"command: {shlex.join(['python'] + sys.argv)}")
  print(f"python {platform.python_version()} on {platform.machine()} "
        f"({platform.processor() or 'cpu'}), {'one core' if pinned else 'unpinned'}")
  for env in args.env or sorted(BENCHES):
    for name, count, seconds, unit in BENCHES[env](args.seconds):
      print(f"{env:>4} {name:<40} {count / seconds:>12,.0f} {unit}/s"
            f"   ({count} in {seconds:.2f} s)")


if __name__ == "__main__":
  main()
