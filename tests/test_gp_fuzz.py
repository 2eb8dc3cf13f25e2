"""Model output is hostile: the verifier never raises, never executes anything, only gives
rewards from the table, and stays fast on the worst inputs we know."""

import builtins
import contextlib
import json
import os
import statistics
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxrl_gen.envs import general_points as gp

HANDS = [gp.Hand.from_cards(c) for c in (("SA", "C3", "HK", "D6"), ("S3", "H3", "C8", "D8"),
                                         ("ST", "H4", "C3", "DA"))]
MODES = [gp.EnvParams(reward_mode=mode, language_only=language_only)
         for mode in ("paper", "legacy") for language_only in (True, False)]
ADVERSARIAL_FORMULAS = [
    "9**9**9", "9**9**9**9**9", "(" * 10_000 + "(10-4)*(3+1)" + ")" * 10_000, "(" * 10_000,
    ")" * 10_000, "1/0", "10/(3-3)*4*1", "\u0661\u0662*2", "\uff11+\uff12",
    "__import__('os').system('x')", "exec('import os')", "1" * 100_000, "0" * 50_000 + "3",
    "+" * 60_000, "1+" * 30_000 + "1", "()" * 30_000, "8/(3-8/3)", "(10-4)*(3+1", "", "=",
    "None", "\x00", "\ud800",
]
BLOBS = ["x" * (1 << 20), '"cards": [' * 200_000, '"formula": "' * 100_000, "[" * 1_000_000,
         '{"formula": ' * 100_000, "\n" * (1 << 20)]


def as_answers(formula: str) -> list[str]:
  return [json.dumps({"cards": ["A", "3", "K", "6"], "formula": formula}),
          '{\n  "cards": [10, 4, 3, A],\n  "formula": "' + formula + '",\n}']


formulas = st.one_of(st.text(alphabet="0123456789+-*/()= ", max_size=60), st.text(max_size=60),
                     st.sampled_from(ADVERSARIAL_FORMULAS))
answers = st.one_of(formulas.map(lambda f: as_answers(f)[0]),
                    formulas.map(lambda f: as_answers(f)[1]),
                    st.text(max_size=200), st.sampled_from(BLOBS))


def from_the_table(reward: float, mode: str) -> bool:
  """Paper: exactly one table entry. Legacy: a sum the reference's additive code can give."""
  if mode == "paper":
    return reward in (5, -1, -2, -3, -1.5)
  if reward in (5, 1, 0, -1, -1.5):
    return True
  n = -reward  # -3 per syntax violation plus -2 per number message (at most two)
  return n > 0 and n == int(n) and any(n - 2 * b >= 0 and (n - 2 * b) % 3 == 0 for b in (0, 1, 2))


class Executed(Exception):
  pass


@contextlib.contextmanager
def nothing_executes():
  """eval, exec, compile and os.system raise while the verifier runs."""
  def refuse(*args, **kwargs):
    raise Executed("the verifier tried to execute something")
  saved = builtins.eval, builtins.exec, builtins.compile, os.system
  builtins.eval = builtins.exec = builtins.compile = os.system = refuse
  try:
    yield
  finally:
    builtins.eval, builtins.exec, builtins.compile, os.system = saved


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=answers, hand=st.sampled_from(HANDS), params=st.sampled_from(MODES))
def test_verifier_is_total_and_safe(answer, hand, params):
  with nothing_executes():
    reward, message = gp.verify(answer, hand, params)
  assert isinstance(reward, float) and isinstance(message, str)
  assert from_the_table(reward, params.reward_mode), (reward, message[:200])


def test_verifier_stays_fast_on_hostile_input():
  corpus = BLOBS + [a for f in ADVERSARIAL_FORMULAS for a in as_answers(f)]
  durations = []
  for params in MODES:
    for answer in corpus:
      start = time.perf_counter()
      gp.verify(answer, HANDS[2], params)
      durations.append(time.perf_counter() - start)
  assert statistics.median(durations) < 0.02  # generous: typically well under a millisecond
