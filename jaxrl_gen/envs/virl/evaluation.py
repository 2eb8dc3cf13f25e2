"""V-IRL evaluation (`reference.md` §6): episodes run with a policy, per-step accuracy and
route success, and the environment settings of the three benchmarks.

    accuracy = steps with reward +1 / all steps (retries and forced -1 steps included)
    success  = routes whose every rail point was answered correctly within its budget
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Sequence

from jaxrl_gen.envs.batch import episode_key
from jaxrl_gen.envs.virl import env, verifier

BENCHMARKS = ("id", "rule_ood", "visual_ood")
# A policy answers the current observation; it also gets the state, which a model ignores
# and the scripted expert reads.
Policy = Callable[[env.State, tuple], str]


@dataclasses.dataclass(frozen=True)
class Episode:
  route_index: int
  outputs: tuple[str, ...]
  rewards: tuple[float, ...]
  success: bool


def per_step_accuracy(rewards: Iterable[float]) -> float:
  """The fraction of steps rewarded +1 (0.0 for no steps)."""
  rewards = list(rewards)
  return sum(r == verifier.CORRECT_ACTION for r in rewards) / len(rewards) if rewards else 0.0


def route_success(episodes: Sequence[Episode]) -> float:
  """The fraction of episodes that reached the destination within every budget."""
  return sum(e.success for e in episodes) / len(episodes) if episodes else 0.0


def expert_policy(params: env.EnvParams) -> Policy:
  """The scripted expert: always the ground-truth answer."""
  return lambda state, obs: env.expert_answer(state, params)


def run_episode(policy: Policy, key, params: env.EnvParams,
                route_index: int | None = None) -> Episode:
  """One episode from `reset(key, params, route_index)` to termination or truncation."""
  state, obs = env.reset(key, params, route_index)
  outputs, rewards = [], []
  while True:
    answer = policy(state, obs)
    state, obs, reward, terminated, truncated, _ = env.step(state, answer, params)
    outputs.append(answer)
    rewards.append(reward)
    if terminated or truncated:
      return Episode(state.route_index, tuple(outputs), tuple(rewards), state.is_success)


def evaluate(policy: Policy, params: env.EnvParams, *, episodes: int | None = None,
             seed: int = 12, ordered: bool = False) -> dict:
  """Runs `episodes` episodes; `ordered` takes the split's routes in order (the mini
  benchmark: all of them when `episodes` is None), else routes are drawn with replacement."""
  if ordered:
    count = len(env.load(params).split(params.route_split))
    episodes = count if episodes is None else min(episodes, count)
  elif episodes is None:
    raise ValueError("evaluate: `episodes` is required unless ordered=True")
  logs = [run_episode(policy, episode_key(seed, i), params, i if ordered else None)
          for i in range(episodes)]
  rewards = [r for e in logs for r in e.rewards]
  return {"episodes": len(logs), "steps": len(rewards),
          "per_step_accuracy": per_step_accuracy(rewards), "route_success": route_success(logs),
          "logs": logs}


def benchmark(config, name: str) -> tuple[env.EnvParams, dict]:
  """The environment and `evaluate` arguments of a benchmark for a `configs/virl.py` config:
  'id' (the training settings on `eval.route_split`), 'rule_ood' (relative actions) and
  'visual_ood' (the mini benchmark in order: `eval.visual_ood_data_dir`, or the synthetic
  'mini' cities)."""
  if name not in BENCHMARKS:
    raise ValueError(f"benchmark {name!r}: must be one of {BENCHMARKS}")
  params = env.EnvParams(**config.env.to_dict())
  if config.eval.episodes < 1 or config.eval.seed < 0:
    raise ValueError(f"config.eval: episodes={config.eval.episodes} must be >= 1 and"
                     f" seed={config.eval.seed} >= 0")
  run = {"episodes": config.eval.episodes, "seed": config.eval.seed, "ordered": False}
  if name == "visual_ood":
    params = dataclasses.replace(params, data_dir=config.eval.visual_ood_data_dir,
                                 synthetic="mini", route_split="all", action_space="absolute")
    return params, dict(run, episodes=None, ordered=True)
  params = dataclasses.replace(params, route_split=config.eval.route_split)
  if name == "rule_ood":
    params = dataclasses.replace(params, action_space="relative")
  return params, run
