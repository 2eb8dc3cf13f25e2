"""V-IRL navigation (V-IRL-L text, V-IRL-VL street views) as pure functions (`core.Env`).

    from jaxrl_gen.envs import virl
    params = virl.EnvParams(language_only=False, resolution=336)
    state, obs = virl.reset(0, params)
    state, obs, reward, terminated, truncated, info = virl.step(state, answer, params)

`TASK` holds its benchmarks and scoring (`evaluation`); `jaxrl_gen.eval` runs and scores
episodes. Route data: `EnvParams.data_dir` in the published layout (see `routes`), or, when
empty, a synthetic city generated once into a cache (see `synth`).
"""

from jaxrl_gen.envs.virl.env import (EnvParams, State, check_files, data_dir, expert_answer,
                                     info, prompt, render, reset, step)
from jaxrl_gen.envs.virl.evaluation import TASK
from jaxrl_gen.envs.virl.verifier import verify

__all__ = [
    "EnvParams", "State", "check_files", "data_dir", "expert_answer", "info", "prompt", "render",
    "reset", "step", "verify", "TASK",
]
