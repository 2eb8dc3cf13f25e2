"""Expert prompt -> response pairs generated from the environments (`reference.md` §5).

The paper's SFT data are "optimal single-turn pairs": the environment's first-turn prompt
(with its image for the -VL variants) and the expert's answer. A task registers a function
`pairs(rng, params, options) -> list[Pair]` drawing one episode's pairs from `rng`:
GeneralPoints gives one pair per dealt hand; V-IRL one per rail point of a route walked by the
expert. Everything is a pure function of the seed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from jaxrl_gen.envs import core

FORMULA_PICKS = ("random", "first")


@dataclasses.dataclass(frozen=True)
class Pair:
  """One SFT example: the prompt turn (text and optional image), failed attempts with the
  verifier's feedback (`history`, sequential revision; empty for the reference's single-turn
  data), the target, and metadata."""

  prompt: str
  response: str
  image: Any = None  # PIL image or None
  meta: dict = dataclasses.field(default_factory=dict)
  history: tuple[tuple[str, str], ...] = ()  # (failed answer, verifier message)

  def conversation(self) -> core.Conversation:
    """The prompt, each failed answer and its feedback turn, then the target answer."""
    conversation = (core.Turn("user", self.prompt, self.image),)
    for answer, message in self.history:
      conversation = core.revise(conversation, answer, message)
    return conversation + (core.Turn("assistant", self.response),)


def gp_pairs(rng: np.random.Generator, params, options: dict) -> list[Pair]:
  """A solvable GeneralPoints hand, its prompt (and card image for GP-VL) and an expert answer:
  a solver formula in the reference's answer layout, uniformly drawn among the hand's expert
  formulas (`formula='random'`) or the first one (`'first'`). With `revisions` = k > 0, the
  answer follows 0..k (uniform) failed attempts (`gp_wrong_answers`) and the verifier's
  feedback, as in an episode of sequential revision. With `rules='family'` each hand's rule
  (J/Q/K values and target) is drawn from the pre-training family (`general_points.rules`)."""
  from jaxrl_gen.envs import general_points as gp
  from jaxrl_gen.envs.general_points import rules

  pick = options.get("formula", "random")
  if pick not in FORMULA_PICKS:
    raise ValueError(f"data.formula={pick!r}: must be one of {FORMULA_PICKS}")
  revisions = options.get("revisions", 0)
  if not isinstance(revisions, int) or revisions < 0:
    raise ValueError(f"data.revisions={revisions!r}: must be an integer >= 0")
  rule_set = options.get("rules", "env")
  if rule_set not in rules.RULE_SETS:
    raise ValueError(f"data.rules={rule_set!r}: must be one of {rules.RULE_SETS}")
  if rule_set == "family":
    params = rules.family_params(rng, params)
  hand = gp.deal(rng, params)
  answer = gp.expert_answer(hand, params, rng if pick == "random" else None)
  image = None if params.language_only else gp.render(hand, params)
  history = ()
  if revisions:
    wrong = [w for w in gp_wrong_answers(answer, hand, rng) if gp.verify(w, hand, params)[0] != 5]
    picks = rng.integers(len(wrong), size=int(rng.integers(revisions + 1)))
    history = tuple((wrong[i], gp.verify(wrong[i], hand, params)[1]) for i in picks)
  meta = {"cards": list(hand.cards)}
  if rule_set == "family":
    meta.update(face_values=list(params.face_numbers), target=params.target)
  return [Pair(gp.prompt(hand, params), answer, image, meta, history)]


def gp_wrong_answers(answer: str, hand, rng: np.random.Generator) -> list[str]:
  """Mistakes on an expert answer: another operator, an extra '+1', 'x' for '*', a wrong card
  (some may still be right: check with the verifier)."""
  formula = answer.split('"formula": "', 1)[1].split("=", 1)[0]
  ops = [i for i, c in enumerate(formula) if c in "+-*/"]
  swapped = list(formula)
  i = ops[int(rng.integers(len(ops)))]
  swapped[i] = "+-*/"[("+-*/".index(swapped[i]) + 1) % 4]
  wrong_cards = list(hand.plain)
  wrong_cards[0] = "K" if wrong_cards[0] != "K" else "2"
  return [answer.replace(formula, "".join(swapped)),
          answer.replace(formula, formula + "+1"),
          answer.replace(formula, formula.replace("*", "x")),
          answer.replace(str(list(hand.plain)), str(wrong_cards))]


def virl_pairs(rng: np.random.Generator, params, options: dict) -> list[Pair]:
  """A V-IRL route walked by the expert: at every rail point, the fresh single-turn prompt
  (with the street-view grid for V-IRL-VL) and the ground-truth answer."""
  del options
  from jaxrl_gen.envs import virl

  state, _ = virl.reset(int(rng.integers(2**63)), params)
  pairs = []
  while not state.done:
    (turn,) = state.conversation
    answer = virl.expert_answer(state, params)
    pairs.append(Pair(turn.text, answer, turn.image,
                      {"route": state.route_index, "point": state.position}))
    state, *_ = virl.step(state, answer, params)
  return pairs


# Task name -> pair generator.
TASKS: dict[str, Callable[[np.random.Generator, Any, dict], list[Pair]]] = {
    "gp": gp_pairs, "virl": virl_pairs}


def episode_pairs(task: str, params, options: dict, seed: int, split: int, index: int
                  ) -> list[Pair]:
  """The pairs of episode `index` of a split: a generator seeded by (seed, split, index), so any
  episode can be regenerated alone and splits never share a stream."""
  if task not in TASKS:
    raise ValueError(f"no expert data for task {task!r}; tasks with experts: {', '.join(TASKS)}")
  return TASKS[task](np.random.default_rng([seed, split, index]), params, options)
