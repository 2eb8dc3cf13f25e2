"""GeneralPoints as the trainers and evaluation see it (`TASK`, a `core.Task`): the paper's
benchmarks (`reference.md` §2.10, §3.8), how an episode is scored, and what an answer claims.

Benchmarks: id (face cards 10), rule_ood (J/Q/K = 11/12/13, a face card in every hand),
visual_ood (GP-VL, red suits), each with `eval.verify_iter` attempts; recognition_id /
recognition_rule_ood / recognition_visual_ood (GP-VL, one attempt, no verification).

A benchmark under another rule than the ID one (rule_ood) also scores the memorization probe
`training_rule`: the share of first attempts whose formula uses the hand's numbers as the
training rule reads them (J/Q/K = 10) instead of as the prompt states (`applies_training_rule`).
"""

from __future__ import annotations

import dataclasses
import fractions
from typing import Sequence

from jaxrl_gen import config_lib
from jaxrl_gen.envs import core, fields
from jaxrl_gen.envs.general_points import formula as formula_lib
from jaxrl_gen.envs.general_points import prompts, verifier
from jaxrl_gen.envs.general_points.cards import Hand
from jaxrl_gen.envs.general_points.params import EnvParams

# Each benchmark states its own rule, whatever rule (env.face_values) the run trains on.
RULES = {
    "id": {"face_cards_as_10": True, "face_values": (), "ood": False},
    "rule_ood": {"face_cards_as_10": False, "face_values": (), "ood": True},
    "visual_ood": {"face_cards_as_10": True, "face_values": (), "ood": False, "color": "red"},
}
TRAINING_RULE = (10, 10, 10)  # the ID rule's J/Q/K values, what the warm-up and branches train on
RECOGNITION = "recognition_"
BENCHMARKS = tuple(RULES) + tuple(RECOGNITION + name for name in RULES)
SUCCESS_REWARD = verifier.REWARD_FN["CORRECT_SOLUTION"]
_VISION_REWARD = verifier.REWARD_FN["INCORRECT_VISION"]
_MAX_DIGITS = 12  # longer numbers are not card values; refusing them bounds the arithmetic


def benchmark(config, name: str) -> core.Benchmark:
  """A benchmark of a `configs/gp.py` config: its rule table on the run's environment."""
  recognition = name.startswith(RECOGNITION)
  rule = name.removeprefix(RECOGNITION)
  params = EnvParams(**config.env.to_dict())
  if params.language_only and (recognition or rule == "visual_ood"):
    raise ValueError(f"config.eval.benchmarks: {name!r} needs the GP-VL variant (card images)")
  params = dataclasses.replace(params, **RULES[rule], verification=not recognition,
                               verify_iter=1 if recognition else config.eval.verify_iter)
  return core.Benchmark(name, "gp", params, config.eval.episodes,
                        config_lib.seed_of(config, "eval"))


def episode_success(episode: Sequence) -> bool:
  """Any attempt solved the hand."""
  return any(t.reward == SUCCESS_REWARD for t in episode)


def graded(t) -> bool:
  """The verifier read the step's answer: not the forced-fail step (no formula read)."""
  return t.info.get("Formula") is not None


def hand_id(info) -> str:
  """The hand's cards in dealing order, e.g. 'SK-DT-HA-C5'."""
  return "-".join(info["Cards"])


def counts(bench: core.Benchmark, transitions: Sequence, episodes: Sequence[Sequence]) -> dict:
  """success, first_attempt_success, parse_rate(_first) and (GP-VL) recognition_accuracy as
  (hits, total); see `jaxrl_gen.eval`."""
  graded_steps = [t for t in transitions if graded(t)]
  first = [t for t in graded_steps if t.attempt == 0]
  out = {
      "success": (sum(episode_success(e) for e in episodes), len(episodes)),
      "first_attempt_success": (sum(e[0].reward == SUCCESS_REWARD for e in episodes),
                                len(episodes)),
      "parse_rate": (sum(verifier.well_formed(t.info["Formula"]) for t in graded_steps),
                     len(graded_steps)),
      "parse_rate_first": (sum(verifier.well_formed(t.info["Formula"]) for t in first),
                           len(first)),
  }
  if not bench.params.language_only:
    out["recognition_accuracy"] = (sum(t.reward != _VISION_REWARD for t in transitions),
                                   len(transitions))
  if bench.params.face_numbers != TRAINING_RULE:
    out["training_rule"] = (sum(applies_training_rule(t) for t in first), len(first))
  return out


def formula_numbers(formula: str | None) -> list[int] | None:
  """The numbers a formula uses, sorted (None when it does not tokenize)."""
  tokens = formula_lib.tokenize(formula) if formula and formula != "None" else None
  if not tokens or any(t.isdigit() and len(t) > _MAX_DIGITS for t in tokens):
    return None
  return sorted(int(t) for t in tokens if t.isdigit())


def applies_training_rule(t) -> bool:
  """The memorization probe of an answer to a hand under another rule: its formula uses the
  hand's numbers as the ID rule reads them (J/Q/K = 10), not as the stated rule does."""
  cards = t.info.get("Cards")
  used = formula_numbers(t.info.get("Formula"))
  if not cards or used is None:
    return False
  trained = sorted(Hand.from_cards(cards, face_values=TRAINING_RULE).numbers)
  return used == trained and trained != sorted(t.info["Numbers"])


def headline(name: str) -> str:
  """The metric a benchmark is plotted by (Fig. 5/6/8)."""
  return "recognition_accuracy" if name.startswith(RECOGNITION) else "success"


def claimed_value(text: str) -> str | None:
  """The exact value of the answer's formula (a `Fraction` as text) by the safe parser, never
  `eval`; None when it does not parse or holds a number of more than 12 digits."""
  claimed = verifier.read_formula(fields.clip(text))
  tokens = formula_lib.tokenize(claimed) if claimed != "None" else None
  if not tokens or any(t.isdigit() and len(t) > _MAX_DIGITS for t in tokens):
    return None
  rpn = formula_lib.to_rpn(tokens)
  if rpn is None:
    return None
  try:
    value = formula_lib.evaluate(rpn, lambda t: fractions.Fraction(int(t)))
  except (ZeroDivisionError, ValueError, IndexError):
    return None
  return str(value)


TASK = core.Task(
    name="gp",
    reward_names=verifier.REWARD_FN,
    action_field="formula",
    answer_key=claimed_value,
    expert_answer=lambda state, params: prompts.expert_answer(state.hand, params),
    episode_success=episode_success,
    single_attempt=lambda env: not env.verification,  # verification off: one attempt
    benchmarks=BENCHMARKS,
    paper_benchmarks={"l": ("id", "rule_ood"), "vl": BENCHMARKS},
    benchmark=benchmark,
    counts=counts,
    headline=headline,
    ignores_answer=lambda state, params: (state.remaining <= 0 and params.verification
                                          and params.forced_fail_step),
    success_reward=SUCCESS_REWARD,
    hand_id=hand_id,
    graded=graded,
)
