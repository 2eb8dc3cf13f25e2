"""GeneralPoints (the generalized 24 game), GP-L and GP-VL, as pure functions.

    params = EnvParams(...)
    state, obs = reset(key, params)
    state, obs, reward, terminated, truncated, info = step(state, answer_text, params)
    reward, message = verify(answer_text, hand, params)

plus `solve`, `prompt`, `render`, `expert_answer`, `deal` and `well_formed` (whether a
formula read from an answer is a complete expression), and `TASK` (its benchmarks and
scoring, `evaluation`). `gym_env` wraps it as a `gymnasium.Env` (id
`jaxrl_gen/GeneralPoints-v0`).
"""

from jaxrl_gen.envs.general_points.cards import Hand, deal, normalize_rank
from jaxrl_gen.envs.general_points.env import State, episode_info, initial_state, reset, step
from jaxrl_gen.envs.general_points.params import EnvParams
from jaxrl_gen.envs.general_points.prompts import (answer_text, expert_answer, expert_formulas,
                                                   prompt)
from jaxrl_gen.envs.general_points.canvas import render
from jaxrl_gen.envs.general_points.solver import solve
from jaxrl_gen.envs.general_points.verifier import REWARD_FN, grade, verify, well_formed
from jaxrl_gen.envs.general_points.evaluation import TASK

__all__ = [
    "EnvParams", "Hand", "State", "REWARD_FN", "TASK", "answer_text", "deal", "episode_info",
    "expert_answer", "expert_formulas", "grade", "initial_state", "normalize_rank", "prompt",
    "render", "reset", "solve", "step", "verify", "well_formed",
]
