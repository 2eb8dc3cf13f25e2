"""The self-judged reward's judge: a frozen copy of the initial model, prompted once per
trajectory to rate it, ending with a boxed score in [0, 1] (`spec/algorithms.md` §2.1 (2)).

    scores = Judge(policy_of_frozen_model).scores(prompts, answers, key)

The judge sees the task's question (and image) and the candidate answer, never the verifier's
result; its rubric weighs answer correctness 0.5, reasoning quality 0.3 and grounding in the
observation 0.2, and asks for 0 when the answer's format is broken. It samples at temperature
1.0 with top-p 0.9, as the official code.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from jaxrl_gen.envs import core
from jaxrl_gen.train import rewards

RUBRIC = (
    "You are grading one candidate answer to a task. Rate three things, each from 0 to 1: "
    "answer_correctness (weight 0.5): is the final answer right for the task as stated; "
    "reasoning_quality (weight 0.3): is the reasoning sound and complete; visual_grounding "
    "(weight 0.2): does it use what the observation actually shows. If the answer does not "
    "follow the format the task asks for, every score is 0. Give "
    '{"answer_correctness": a, "reasoning_quality": r, "visual_grounding": v, '
    '"overall_score": s} with s = 0.5 a + 0.3 r + 0.2 v, then end with \\boxed{s}.')


def conversation(prompt: core.Conversation, answer: str) -> core.Conversation:
  """The judge's conversation for one trajectory: the rubric, the task's first user turn
  (with its image) and the candidate answer."""
  question = next(t for t in prompt if t.role == "user")
  return (core.Turn("system", RUBRIC),
          core.Turn("user", f"Task:\n{question.text}\n\nCandidate answer:\n{answer}",
                    question.image))


@dataclasses.dataclass
class Judge:
  """A `ModelPolicy` of the frozen model, with the judge's sampling settings."""
  policy: object
  max_new_tokens: int
  temperature: float = 1.0
  top_p: float = 0.9

  def scores(self, prompts: Sequence[core.Conversation], answers: Sequence[str], key
             ) -> tuple[np.ndarray, int]:
    """(the judge's score per trajectory, the tokens it read and wrote)."""
    generations = self.policy.generate(
        [conversation(p, a) for p, a in zip(prompts, answers)], key,
        max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p)
    tokens = sum(len(g.prompt_ids) + len(g.tokens) for g in generations)
    return np.array([rewards.judge_score(g.text) for g in generations]), tokens
