"""V-IRL as the trainers and evaluation see it (`TASK`, a `core.Task`): the three benchmarks
(`reference.md` §6), how an episode is scored, and what an answer claims.

    per_step_accuracy = steps rewarded +1 / all steps (retries and forced -1 steps included)
    route_success     = routes whose every rail point was answered correctly within its budget

Benchmarks: id (the training settings on `eval.route_split`), rule_ood (relative actions)
and visual_ood (the mini benchmark in order: `eval.visual_ood_data_dir`, or the synthetic
'mini' cities), each with `eval.verify_iter` attempts per rail point.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from jaxrl_gen import config_lib
from jaxrl_gen.envs import core, fields
from jaxrl_gen.envs.virl import env, verifier

BENCHMARKS = ("id", "rule_ood", "visual_ood")
# The reference StatLogger's reward table (its -1.75 is a reward this verifier never gives).
REWARD_NAMES = {"CORRECT_ACTION": verifier.CORRECT_ACTION,
                "INCORRECT_ACTION": verifier.INCORRECT_ACTION,
                "INCORRECT_OBS": verifier.INCORRECT_OBS, "INCORRECT_INSTRUCTION": -1.75}


def benchmark(config, name: str) -> core.Benchmark:
  """A benchmark of a `configs/virl.py` config; visual_ood runs every route of its split."""
  params = dataclasses.replace(env.EnvParams(**config.env.to_dict()),
                               verify_iter=config.eval.verify_iter)
  if name == "visual_ood":
    params = dataclasses.replace(params, data_dir=config.eval.visual_ood_data_dir,
                                 synthetic="mini", route_split="all", action_space="absolute")
    routes = len(env.load(params).split(params.route_split))
    return core.Benchmark(name, "virl", params, routes, config_lib.seed_of(config, "eval"),
                          ordered=True)
  params = dataclasses.replace(params, route_split=config.eval.route_split)
  if name == "rule_ood":
    params = dataclasses.replace(params, action_space="relative")
  return core.Benchmark(name, "virl", params, config.eval.episodes,
                        config_lib.seed_of(config, "eval"))


def episode_success(episode: Sequence) -> bool:
  """The route was completed within every budget."""
  return bool(episode[-1].info.get("is_success")) and episode[-1].done


def counts(bench: core.Benchmark, transitions: Sequence, episodes: Sequence[Sequence]) -> dict:
  """per_step_accuracy and route_success as (hits, total); see `jaxrl_gen.eval`."""
  del bench  # every V-IRL benchmark is scored alike
  return {
      "per_step_accuracy": (sum(t.reward == verifier.CORRECT_ACTION for t in transitions),
                            len(transitions)),
      "route_success": (sum(episode_success(e) for e in episodes), len(episodes)),
  }


def action(text: str) -> str | None:
  """The answer's "action" field, white space folded; None when absent."""
  value = fields.string_field(fields.clip(text), "action")
  return None if value is None else " ".join(value.split())


TASK = core.Task(
    name="virl",
    reward_names=REWARD_NAMES,
    action_field="action",
    answer_key=action,
    expert_answer=env.expert_answer,
    episode_success=episode_success,
    single_attempt=lambda env_settings: False,  # a route is several rail points
    benchmarks=BENCHMARKS,
    paper_benchmarks={"l": ("id", "rule_ood"), "vl": BENCHMARKS},
    benchmark=benchmark,
    counts=counts,
    headline=lambda name: "per_step_accuracy",
    solutions_are_episodes=True,
    ignores_answer=lambda state, params: state.attempts >= params.verify_iter,
    hand_id=lambda info: f"route{info['route_index']}",  # the heading and drop-out: the key's
    graded=lambda t: t.message != verifier.OVER_BUDGET_INFO,  # not the forced -1 step
)
