"""Evaluation (`reference.md` §6): the ID / OOD / recognition benchmarks, run with a policy in
batched lock-step episodes, scored as the paper scores them, logged as the reference logs.

A policy answers a batch of conversations: `policy(conversations, key) -> answers` (the
model-backed policy: one batched generation). A `ScriptedPolicy` reads the env states instead
(the experts, test scripts). `evaluate(policy, config)` runs the benchmarks `config.eval`
selects; a command is `results = evaluate(...)`, `print(format_table(results))`.

Benchmarks (environment settings from the run's config plus the variant table, §2.10, §3.8):
  GP: id (face cards 10), rule_ood (J/Q/K = 11/12/13, a face card in every hand), visual_ood
      (GP-VL, red suits), each with `eval.verify_iter` attempts; recognition_id /
      recognition_rule_ood / recognition_visual_ood (GP-VL, one attempt, no verification).
  V-IRL: id, rule_ood (relative actions) on `eval.route_split`, visual_ood (the mini routes
      in order); see `envs.virl.evaluation.benchmark`.
Episode i of a benchmark always resets from key (eval.seed, i), so results do not depend on
the batch size.

Metrics (binomial error bars sqrt(P(1-P)/N)):
  success               GP: episodes with a +5 step / episodes (success at any attempt)
  first_attempt_success GP: episodes solved at their first attempt / episodes
  parse_rate            GP: graded attempts (forced-fail steps excluded) whose formula the
                        verifier can parse (a "formula" field holding a complete expression
                        of legal characters, `general_points.well_formed`; in paper reward
                        mode on GP-L exactly the attempts not rewarded -3) / graded attempts
  parse_rate_first      GP: the same over first attempts only (the single-turn answers SFT
                        trains on; later attempts answer revision turns)
  recognition_accuracy  GP-VL: 1 - (steps rewarded -1.5) / steps
  per_step_accuracy     V-IRL: steps rewarded +1 / steps (retries and forced -1 steps count)
  route_success         V-IRL: episodes that reached the destination within every budget

Logs (`log_dir/<benchmark>.jsonl`): one line per step {sample_id, veri_step, output, reward,
info}, one summary per episode {sample_id, output, reward (the episode's total), steps,
success, info}, and last the reference's {"Step Number", "Trajectory Number", "Rates"} (plus
"Counts"): per reward name count/steps, CORRECT_SOLUTION = successes/episodes, rewards not
in the task's table counted as AGGREGATED_ERROR.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxrl_gen import envs
from jaxrl_gen.envs import batch, core
from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.envs import virl

Policy = Callable[[list[core.Conversation], Any], list[str]]

GP_RULES = {  # reference.md §2.10
    "id": {"face_cards_as_10": True, "ood": False},
    "rule_ood": {"face_cards_as_10": False, "ood": True},
    "visual_ood": {"face_cards_as_10": True, "ood": False, "color": "red"},
}
RECOGNITION = "recognition_"
BENCHMARKS = {
    "gp": tuple(GP_RULES) + tuple(RECOGNITION + name for name in GP_RULES),
    "virl": virl.evaluation.BENCHMARKS,
}
# The paper's benchmarks per (task, variant): what `eval.benchmarks='all'` runs.
ALL = {("gp", "l"): ("id", "rule_ood"), ("gp", "vl"): BENCHMARKS["gp"],
       ("virl", "l"): ("id", "rule_ood"), ("virl", "vl"): BENCHMARKS["virl"]}
# The reference StatLogger's reward tables (value -> name for the "Rates").
REWARD_NAMES = {
    "gp": gp.REWARD_FN,
    "virl": {"CORRECT_ACTION": 1.0, "INCORRECT_ACTION": -1.0, "INCORRECT_OBS": -1.5,
             "INCORRECT_INSTRUCTION": -1.75},
}
AGGREGATED_ERROR = "AGGREGATED_ERROR"
CORRECT_SOLUTION = "CORRECT_SOLUTION"
GP_SUCCESS_REWARD = gp.REWARD_FN[CORRECT_SOLUTION]
GP_VISION_REWARD = gp.REWARD_FN["INCORRECT_VISION"]
VIRL_CORRECT_REWARD = virl.verifier.CORRECT_ACTION


@dataclasses.dataclass(frozen=True)
class ScriptedPolicy:
  """A policy that reads the env state: `answer(state, conversation, params) -> str`."""

  answer: Callable[[Any, core.Conversation, Any], str]


def expert_policy(task: str) -> ScriptedPolicy:
  """The scripted expert of a task (the SFT target answer; always correct)."""
  if task == "gp":
    return ScriptedPolicy(lambda state, _, params: gp.expert_answer(state.hand, params))
  return ScriptedPolicy(lambda state, _, params: virl.expert_answer(state, params))


@dataclasses.dataclass(frozen=True)
class Benchmark:
  name: str
  task: str
  params: Any  # the task's EnvParams
  episodes: int
  seed: int
  ordered: bool = False


def benchmark(config, name: str) -> Benchmark:
  """One benchmark of a `configs/gp.py` or `configs/virl.py` config."""
  if name not in BENCHMARKS[config.task]:
    raise ValueError(f"config.eval.benchmarks: unknown {config.task} benchmark {name!r};"
                     f" known: {', '.join(BENCHMARKS[config.task])}")
  if config.task == "virl":
    params, run = virl.benchmark(config, name)
    params = dataclasses.replace(params, verify_iter=config.eval.verify_iter)
    episodes = run["episodes"]
    if run["ordered"]:
      episodes = len(virl.env.load(params).split(params.route_split))
    return Benchmark(name, "virl", params, episodes, run["seed"], run["ordered"])
  recognition = name.startswith(RECOGNITION)
  rule = name.removeprefix(RECOGNITION)
  params = envs.params_from_config(config)
  if params.language_only and (recognition or rule == "visual_ood"):
    raise ValueError(f"config.eval.benchmarks: {name!r} needs the GP-VL variant (card images)")
  params = dataclasses.replace(params, **GP_RULES[rule], verification=not recognition,
                               verify_iter=1 if recognition else config.eval.verify_iter)
  return Benchmark(name, "gp", params, config.eval.episodes, config.eval.seed)


def benchmarks(config) -> list[Benchmark]:
  """The benchmarks `config.eval.benchmarks` names (a comma list, or 'all')."""
  for key, low in (("episodes", 1), ("seed", 0), ("verify_iter", 1), ("batch_size", 1)):
    value = config.eval[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      raise ValueError(f"config.eval.{key}={value!r}: must be an integer >= {low}")
  names = [n.strip() for n in config.eval.benchmarks.split(",") if n.strip()]
  if names == ["all"]:
    names = list(ALL[config.task, config.variant])
  if not names:
    raise ValueError("config.eval.benchmarks is empty; name some, or 'all'")
  return [benchmark(config, name) for name in names]


def run(policy: Policy | ScriptedPolicy, bench: Benchmark, *, batch_size: int,
        key=None, progress: bool = False) -> list[batch.Transition]:
  """All episodes of a benchmark, `batch_size` at a time; transitions by (episode, attempt).
  `progress`: a progress bar of finished episodes (on stderr)."""
  from tqdm import tqdm  # noqa: PLC0415

  runner = batch.LockstepEpisodes(envs.get(bench.task), bench.params, batch_size,
                                  batch.EpisodeStream(bench.seed, ordered=bench.ordered),
                                  num_episodes=bench.episodes)
  key = jax.random.key(bench.seed) if key is None else key
  transitions, turn = [], 0
  with tqdm(total=bench.episodes, desc=bench.name, unit="episode", disable=not progress,
            dynamic_ncols=True) as bar:
    while not runner.done:
      conversations = runner.conversations()
      if isinstance(policy, ScriptedPolicy):
        answers = [policy.answer(state, conversation, bench.params)
                   for state, conversation in zip(runner.states(), conversations)]
      else:
        answers = list(policy(conversations, jax.random.fold_in(key, turn)))
      step = runner.step(answers)
      transitions += step
      turn += 1
      bar.update(sum(t.done for t in step))
      bar.set_postfix(turn=turn, answers=len(transitions))
  return sorted(transitions, key=lambda t: (t.episode, t.attempt))


def _episodes(transitions: Sequence[batch.Transition]) -> list[list[batch.Transition]]:
  groups = collections.defaultdict(list)
  for t in transitions:
    groups[t.episode].append(t)
  return [groups[e] for e in sorted(groups)]


def episode_success(task: str, episode: Sequence[batch.Transition]) -> bool:
  """GP: any attempt solved the hand; V-IRL: the route was completed within every budget."""
  if task == "gp":
    return any(t.reward == GP_SUCCESS_REWARD for t in episode)
  return bool(episode[-1].info.get("is_success")) and episode[-1].done


def score(bench: Benchmark, transitions: Sequence[batch.Transition]) -> dict:
  """The benchmark's metrics and their binomial error bars (see the module docstring)."""
  episodes = _episodes(transitions)
  steps = len(transitions)
  out = {"episodes": len(episodes), "steps": steps}

  def rate(name: str, hits: int, total: int):
    p = hits / total if total else 0.0
    out[name] = p
    out[name + "_stderr"] = math.sqrt(p * (1 - p) / total) if total else 0.0

  successes = sum(episode_success(bench.task, e) for e in episodes)
  if bench.task == "gp":
    rate("success", successes, len(episodes))
    rate("first_attempt_success", sum(e[0].reward == GP_SUCCESS_REWARD for e in episodes),
         len(episodes))
    graded = [t for t in transitions if t.info.get("Formula") is not None]  # not forced fails
    first = [t for t in graded if t.attempt == 0]
    rate("parse_rate", sum(gp.well_formed(t.info["Formula"]) for t in graded), len(graded))
    rate("parse_rate_first", sum(gp.well_formed(t.info["Formula"]) for t in first), len(first))
    if not bench.params.language_only:
      rate("recognition_accuracy", sum(t.reward != GP_VISION_REWARD for t in transitions), steps)
  else:
    rate("per_step_accuracy", sum(t.reward == VIRL_CORRECT_REWARD for t in transitions), steps)
    rate("route_success", successes, len(episodes))
  return out


def headline(bench_name: str, task: str) -> str:
  """The metric a benchmark is plotted by (Fig. 5/6/8)."""
  if bench_name.startswith(RECOGNITION):
    return "recognition_accuracy"
  return "success" if task == "gp" else "per_step_accuracy"


def stat_log(task: str, transitions: Sequence[batch.Transition]) -> dict:
  """The reference StatLogger's final record."""
  names = {value: name for name, value in REWARD_NAMES[task].items()}
  counts = collections.Counter(names.get(t.reward, AGGREGATED_ERROR) for t in transitions)
  episodes = _episodes(transitions)
  if task == "virl":  # route successes, as the reference's log_virl_success
    counts[CORRECT_SOLUTION] = sum(episode_success(task, e) for e in episodes)
  steps = max(len(transitions), 1)
  rates = {name: count / steps for name, count in counts.items()}
  rates[CORRECT_SOLUTION] = counts.get(CORRECT_SOLUTION, 0) / max(len(episodes), 1)
  return {"Step Number": len(transitions), "Trajectory Number": len(episodes), "Rates": rates,
          "Counts": dict(counts)}


def json_safe(value: Any) -> Any:
  """`value` with tuples as lists, NumPy values as Python ones, anything else as its str."""
  if isinstance(value, dict):
    return {str(k): json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, np.ndarray):
    return json_safe(value.tolist())
  if isinstance(value, np.generic):
    return json_safe(value.item())
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if value is None or isinstance(value, (str, bool, int, float)):
    return value
  return str(value)


def write_log(path: str, task: str, transitions: Sequence[batch.Transition]):
  """The JSONL step log, episode summaries and the final StatLogger record."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    def line(record):
      f.write(json.dumps(json_safe(record)) + "\n")

    for episode in _episodes(transitions):
      for t in episode:
        line({"sample_id": t.episode, "veri_step": t.attempt, "output": t.answer,
              "reward": t.reward, "info": t.info})
      line({"sample_id": episode[0].episode, "output": episode[-1].answer,
            "reward": sum(t.reward for t in episode), "steps": len(episode),
            "success": episode_success(task, episode), "info": episode[-1].info})
    line(stat_log(task, transitions))


def evaluate(policy: Policy | ScriptedPolicy, config, *, log_dir: str | None = None,
             key=None, batch_size: int | None = None, benches: Sequence[Benchmark] | None = None,
             progress: bool = False) -> dict[str, dict]:
  """Runs the benchmarks `config.eval` selects (or `benches`); {benchmark: metrics}. Writes
  the JSONL logs under `log_dir` when given. `batch_size` defaults to
  `config.eval.batch_size`; `progress` shows a bar per benchmark."""
  results = {}
  for i, bench in enumerate(benchmarks(config) if benches is None else benches):
    bench_key = None if key is None else jax.random.fold_in(key, i)
    transitions = run(policy, bench, batch_size=batch_size or config.eval.batch_size,
                      key=bench_key, progress=progress)
    if log_dir is not None and jax.process_index() == 0:  # every process ran all episodes
      write_log(os.path.join(log_dir, f"{bench.name}.jsonl"), bench.task, transitions)
    results[bench.name] = dict(score(bench, transitions), task=bench.task,
                               metric=headline(bench.name, bench.task))
  return results


def flat_metrics(results: dict[str, dict]) -> dict[str, float]:
  """{'eval/<benchmark>/<metric>': value}: the keys the metric logs and `plots` use."""
  return {f"eval/{name}/{metric}": value for name, scores in results.items()
          for metric, value in scores.items() if isinstance(value, (int, float))}


def format_table(results: dict[str, dict]) -> str:
  """A printable summary: each benchmark's metrics with their error bars."""
  rows = [("benchmark", "metric", "value", "stderr", "episodes", "steps")]
  for name, scores in results.items():
    for metric in [m for m in scores if f"{m}_stderr" in scores]:
      rows.append((name, metric + (" *" if metric == scores.get("metric") else ""),
                   f"{scores[metric]:.4f}", f"{scores[metric + '_stderr']:.4f}",
                   str(scores["episodes"]), str(scores["steps"])))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
  return "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:] + ["(* the headline metric)"])
