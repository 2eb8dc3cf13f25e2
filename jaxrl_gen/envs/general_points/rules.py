"""The family of rules a pre-training stage states in its prompts (`experiment.pretrain`).

The paper's init model can read the rule ("J, Q, K count as 11, 12, 13") because pre-training
taught it to read instructions; a model trained from scratch on the ID rule alone never has.
Pre-training on expert answers under many stated rules gives it that skill:

    J, Q, K   each an independent uniform value in 1..13 (J=3 Q=12 K=7 is one rule)
    target    24 in 60% of the hands, else 20 or 28 (`FAMILY_TARGETS`, with its weights):
              mostly the benchmarks' target, whose formulas a small model must learn first

so every single value the rule-OOD benchmark states (J=11, Q=12, K=13) is read in some prompts,
while the benchmark's rule itself, the mapping (11, 12, 13), never appears, at any target: OOD
success after pre-training is generalisation to an unseen combination, not recall.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxrl_gen.envs.general_points.cards import FACE_VALUES
from jaxrl_gen.envs.general_points.params import EnvParams

HELD_OUT = FACE_VALUES  # the rule-OOD benchmark's J/Q/K values (11, 12, 13)
FAMILY_TARGETS = {24: 0.6, 20: 0.2, 28: 0.2}  # target -> probability
RULE_SETS = ("env", "family")


def family_params(rng: np.random.Generator, params: EnvParams) -> EnvParams:
  """`params` under a rule drawn from the family (J/Q/K values and target; never HELD_OUT)."""
  while True:
    faces = tuple(int(v) for v in rng.integers(1, 14, size=3))
    if faces != HELD_OUT:
      break
  targets = list(FAMILY_TARGETS)
  target = int(targets[int(rng.choice(len(targets), p=list(FAMILY_TARGETS.values())))])
  return dataclasses.replace(params, face_values=faces, target=target)
