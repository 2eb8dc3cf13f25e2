"""Rewards of the GRPO family as functions of a group of answers: the verifier's, agreement
with the group's majority (test-time RL), and the self-judged unsupervised reward of arXiv
2603.21289 (`spec/algorithms.md` §2.1), as its official code computes it.

    answers = [answer_key(task, text) for text in group]     # the comparable answer, or None
    c = self_consistency(answers)                            # the prior c_i
    g = judge_modulation(scores)                             # the judge's bounded multiplier
    R = self_judged(answers, scores)                         # clip(c g(s) + f, 0, 1)
    a = group_log_softmax(R, beta)                           # beta R - logsumexp(beta R)

The "answer" whose consistency counts is what a task's answer claims: for GeneralPoints the
value of the formula (exact, by our safe parser; never `eval`), for V-IRL the action. An
answer that does not parse in the task's format gets the format term f = -0.5 (and counts as
no answer). The judge sees the prompt (and image) and the answer, never the verifier's result.
"""

from __future__ import annotations

import collections
import re
from typing import Sequence

import numpy as np

from jaxrl_gen import envs
from jaxrl_gen.envs import fields

# Self-consistency: hard majority above this share of the group, else the answer's frequency.
CONSENSUS = 0.85
FORMAT_PENALTY = -0.5
# g(s): +-20% around 1, switched on above 0.95 and below 0.40 (the official code's constants).
LAMBDA_HIGH = LAMBDA_LOW = 0.2
THRESHOLD_HIGH, TEMP_HIGH = 0.95, 0.02
THRESHOLD_LOW, TEMP_LOW = 0.40, 0.05
NAMES = ("verifier", "majority", "self_judge")


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def judge_modulation(s):
  """g(s) = clip(1 + 0.2 sigmoid((s - 0.95) / 0.02) - 0.2 sigmoid((0.40 - s) / 0.05), 0.8, 1.2)
  for a judge score s in [0, 1] (a float or an array; the same type back)."""
  x = np.asarray(s, np.float64)
  g = np.clip(1.0 + LAMBDA_HIGH * _sigmoid((x - THRESHOLD_HIGH) / TEMP_HIGH)
              - LAMBDA_LOW * _sigmoid((THRESHOLD_LOW - x) / TEMP_LOW), 0.8, 1.2)
  return float(g) if np.ndim(s) == 0 and not isinstance(s, np.ndarray) else g


def self_consistency(answers: Sequence[str | None]) -> np.ndarray:
  """The prior c_i of each answer of a group: when the most common answer's share exceeds
  0.85, 1 for that answer and 0 for the rest (hard majority); otherwise each answer's share of
  the group (exact string match). Missing answers (None) share one placeholder, as the
  official code's "None", but never score."""
  n = len(answers)
  if not n:
    return np.zeros(0)
  keys = ["\0none" if a is None else str(a) for a in answers]
  counts = collections.Counter(keys)
  top, top_count = counts.most_common(1)[0]
  if top_count / n > CONSENSUS:
    out = np.array([float(k == top) for k in keys])
  else:
    out = np.array([counts[k] / n for k in keys])
  return np.where([a is None for a in answers], 0.0, out)


def majority(answers: Sequence[str | None]) -> np.ndarray:
  """1 for answers equal to the group's unique most common answer when it occurs at least
  twice, else 0 (all 0 on a tie or when every answer differs; MM-UPT's rule)."""
  keys = [a for a in answers if a is not None]
  counts = collections.Counter(keys).most_common(2)
  if not counts or counts[0][1] < 2 or (len(counts) > 1 and counts[1][1] == counts[0][1]):
    return np.zeros(len(answers))
  return np.array([float(a is not None and a == counts[0][0]) for a in answers])


def format_term(answers: Sequence[str | None]) -> np.ndarray:
  """f_i: 0 for an answer in the task's format, -0.5 otherwise."""
  return np.array([0.0 if a is not None else FORMAT_PENALTY for a in answers])


def self_judged(answers: Sequence[str | None], judge_scores) -> np.ndarray:
  """R_i = clip(c_i g(s_i) + f_i, 0, 1) of one group."""
  c = self_consistency(answers)
  g = judge_modulation(np.asarray(judge_scores, np.float64))
  return np.clip(c * g + format_term(answers), 0.0, 1.0)


def majority_reward(answers: Sequence[str | None]) -> np.ndarray:
  """The majority reward with the same format term, clip(m_i + f_i, 0, 1)."""
  return np.clip(majority(answers) + format_term(answers), 0.0, 1.0)


def group_log_softmax(rewards, beta: float = 1.0) -> np.ndarray:
  """a_i = beta R_i - logsumexp_j(beta R_j) over each group (the last axis). Centred within
  the group (Dr.GRPO) this is beta (R_i - mean R): the logsumexp is a constant per group."""
  x = beta * np.asarray(rewards, np.float64)
  top = x.max(axis=-1, keepdims=True)
  return x - (top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True)))


# --- What an answer claims --------------------------------------------------------------------

_BOXED = re.compile(r"\\boxed\{")
_FLOAT = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_SCORE_FIELD = re.compile(r'"overall_score"\s*:\s*"?([-+]?(?:\d+(?:\.\d*)?|\.\d+))')


def answer_key(task: str, text: str) -> str | None:
  """What an answer claims, comparable across a group (module docstring); None when it does
  not parse in the task's format (the task's `answer_key`). Never raises on any text."""
  return envs.task(task).answer_key(text)


def judge_score(text: str) -> float:
  """The judge's score: the last \\boxed{...} float, else the "overall_score" field, clamped
  to [0, 1]; 0 when neither parses."""
  text = fields.clip(text)
  for match in reversed(list(_BOXED.finditer(text))):
    inner = text[match.end():text.find("}", match.end())] if "}" in text[match.end():] else ""
    number = _FLOAT.match(inner)
    if number:
      return float(np.clip(float(number.group(1)), 0.0, 1.0))
  fallback = _SCORE_FIELD.findall(text)
  if fallback:
    return float(np.clip(float(fallback[-1]), 0.0, 1.0))
  return 0.0
