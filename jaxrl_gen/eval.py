"""Evaluation (`reference.md` §6): the ID / OOD / recognition benchmarks, run with a policy in
batched lock-step episodes, scored as the paper scores them, logged as the reference logs.

A policy answers a batch of conversations: `policy(conversations, key) -> answers` (the
model-backed policy: one batched generation). A `ScriptedPolicy` reads the env states instead
(the experts, test scripts). `evaluate(policy, config)` runs the benchmarks `config.eval`
selects; a command is `results = evaluate(...)`, `print(format_table(results))`.

Benchmarks (environment settings from the run's config plus the variant table, §2.10, §3.8)
and their scoring come from the task's record, `envs.task(name)` (a `core.Task`; see
`envs.general_points.evaluation` and `envs.virl.evaluation`). Episode i of a benchmark
always resets from key (eval.seed, i), so results do not depend on the batch size.

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

Logs (`log_dir/<benchmark>.jsonl`; evaluation seed j > 0: `<benchmark>.seed<j>.jsonl`): one
line per step {sample_id, veri_step, output, reward, info}, one summary per episode
{sample_id, output, reward (the episode's total), steps, success, info, hand, attempts}, and
last the reference's {"Step Number", "Trajectory Number", "Rates"} (plus "Counts"): per
reward name count/steps, CORRECT_SOLUTION = successes/episodes, rewards not in the task's
table counted as AGGREGATED_ERROR. A summary's `hand` is the episode's identity
(`core.Task.hand_id`: GP the dealt cards, 'SK-DT-HA-C5'; V-IRL 'route<index>'), the same
for episode i of seed j in every evaluation of that benchmark under the same env settings,
and `attempts` the graded attempts it used (forced-fail steps not counted). `outcomes` reads
them back: the per-hand outcomes that paired tests (`jaxrl_gen.stats`) compare.

A forced-fail step (past the verification budget, `env.forced_fail_step`) ignores its answer,
so a model policy is not asked for it: its logged output is "" (scores are unchanged).

While a benchmark runs, each episode's lines are appended (and flushed) as it ends, so the
log holds every finished episode. Given `resume` (the policy's identity, e.g. the checkpoint
and config it was built from), `evaluate` also keeps `<benchmark>.resume.json`, the lock-step
state after each turn; a later call with the same identity and settings (one process) picks
up from there: the logged episodes are not run again, the ones in flight are replayed from
their answers, and the results equal those of a run never interrupted. The finished log is
rewritten in episode order with the final record.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
from etils import epath

from jaxrl_gen import config_lib, envs, metrics, paths
from jaxrl_gen.envs import batch, core

Policy = Callable[[list[core.Conversation], Any], list[str]]

AGGREGATED_ERROR = "AGGREGATED_ERROR"
PROBE_STREAM = 2**31 - 1  # the probes' sampling keys: folded apart from the benchmarks' (0, 1, ..)
CORRECT_SOLUTION = "CORRECT_SOLUTION"


@dataclasses.dataclass(frozen=True)
class ScriptedPolicy:
  """A policy that reads the env state: `answer(state, conversation, params) -> str`."""

  answer: Callable[[Any, core.Conversation, Any], str]


def expert_policy(task: str) -> ScriptedPolicy:
  """The scripted expert of a task (the SFT target answer; always correct)."""
  expert = envs.task(task).expert_answer
  return ScriptedPolicy(lambda state, _, params: expert(state, params))


def benchmark(config, name: str) -> core.Benchmark:
  """One benchmark of a `configs/gp.py` or `configs/virl.py` config."""
  task = envs.task(config.task)
  if name not in task.benchmarks:
    raise ValueError(f"config.eval.benchmarks: unknown {config.task} benchmark {name!r};"
                     f" known: {', '.join(task.benchmarks)}")
  return task.benchmark(config, name)


def benchmarks(config) -> list[core.Benchmark]:
  """The benchmarks `config.eval.benchmarks` names (a comma list, or 'all')."""
  config_lib.seed_of(config, "eval")  # a ValueError unless an integer >= 0 (or follows)
  for key, low in (("episodes", 1), ("verify_iter", 1), ("batch_size", 1), ("seeds", 1),
                   ("probes", 0)):
    value = config.eval[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      raise ValueError(f"config.eval.{key}={value!r}: must be an integer >= {low}")
  names = [n.strip() for n in config.eval.benchmarks.split(",") if n.strip()]
  if names == ["all"]:
    names = list(envs.task(config.task).paper_benchmarks[config.variant])
  if not names:
    raise ValueError("config.eval.benchmarks is empty; name some, or 'all'")
  return [benchmark(config, name) for name in names]


def run(policy: Policy | ScriptedPolicy, bench: core.Benchmark, *, batch_size: int,
        key=None, progress: bool = False, log: EpisodeLog | None = None
        ) -> list[batch.Transition]:
  """All episodes of a benchmark, `batch_size` at a time; transitions by (episode, attempt).
  `progress`: a progress bar of finished episodes (on stderr). `log`: where each finished
  episode is written as it ends, and the run resumed from (`EpisodeLog`)."""
  task = envs.task(bench.task)
  runner = batch.LockstepEpisodes(envs.get(bench.task), bench.params, batch_size,
                                  batch.EpisodeStream(bench.seed, ordered=bench.ordered),
                                  num_episodes=bench.episodes)
  key = jax.random.key(bench.seed) if key is None else key
  transitions, turn = log.resume(runner) if log is not None else ([], 0)
  finished = sum(t.done for t in transitions)
  with metrics.progress(bench.episodes, finished, progress, desc=bench.name,
                        unit="episode") as bar:
    while not runner.done:
      conversations = runner.conversations()
      if isinstance(policy, ScriptedPolicy):
        answers = [policy.answer(state, conversation, bench.params)
                   for state, conversation in zip(runner.states(), conversations)]
      else:  # a forced-fail step's answer is never read: it is not generated
        ignored = [task.ignores_answer(s, bench.params) for s in runner.states()]
        asked = [c for c, skip in zip(conversations, ignored) if not skip]
        generated = iter(policy(asked, jax.random.fold_in(key, turn)) if asked else [])
        answers = ["" if skip else next(generated) for skip in ignored]
      step = runner.step(answers)
      transitions += step
      turn += 1
      if log is not None:
        log.record(turn, runner, transitions, step)
      bar.update(sum(t.done for t in step))
      bar.set_postfix(turn=turn, answers=len(transitions))
  return sorted(transitions, key=lambda t: (t.episode, t.attempt))


class EpisodeLog:
  """A benchmark's JSONL log (`write_log`'s format) written while it runs, and, with
  `settings` (anything JSON, the identity of the run), `<path minus .jsonl>.resume.json`:
  {settings, turn, episodes (logged so far), runner (`LockstepEpisodes.get_state`),
  in_flight (the step lines of unfinished episodes), done}. Process 0 writes; see the module
  docstring."""

  def __init__(self, path: str, task: str, settings: Any = None):
    self.path, self.task = path, task
    self.state_path = path.removesuffix(".jsonl") + ".resume.json"
    self.settings = None if settings is None else _digest(settings)
    self.writes = jax.process_index() == 0
    self.logged = 0  # episodes in the log

  def resume(self, runner: batch.LockstepEpisodes) -> tuple[list[batch.Transition], int]:
    """(transitions so far, turns taken) of the run this log left, with `runner` moved to
    its state; ([], 0) and an emptied log when there is none to resume."""
    saved = self._saved()
    lines = []
    if saved is not None:
      lines, episodes = _logged_episodes(self.path, saved["episodes"])
      if episodes is None:
        saved, lines = None, []  # the log lost episodes the state counts: start again
    if self.writes:
      epath.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
      epath.Path(self.path).write_text("".join(lines), encoding="utf-8")
    if saved is None:
      return [], 0
    self.logged = saved["episodes"]
    transitions = [t for episode in episodes for t in episode]
    if saved["done"]:
      runner.set_state({"next_episode": runner.num_episodes,
                        "slots": [None] * len(runner.slots)})
    else:
      runner.set_state(saved["runner"])
      transitions += [_transition(r, done=False) for r in saved["in_flight"]]
    return transitions, saved["turn"]

  def _saved(self) -> dict | None:
    """The resume state left by a run with these settings, if any."""
    if (self.settings is None or jax.process_count() > 1
        or not epath.Path(self.state_path).exists()):
      return None  # several processes would each need to see the same files
    try:
      saved = json.loads(epath.Path(self.state_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
      return None
    return saved if saved.get("settings") == self.settings else None

  def record(self, turn: int, runner: batch.LockstepEpisodes,
             transitions: Sequence[batch.Transition], step: Sequence[batch.Transition]):
    """After a turn: appends the episodes `step` finished and saves the resume state."""
    if not self.writes:
      return
    ended = {t.episode for t in step if t.done}
    if ended:
      paths.append_text(self.path, "".join(_episode_lines(self.task, e)
                                           for e in _episodes(transitions)
                                           if e[0].episode in ended))
      self.logged += len(ended)
    if self.settings is not None:
      in_flight = {slot.episode for slot in runner.slots if slot is not None}
      self._write_state(turn=turn, runner=runner.get_state(), done=runner.done,
                        in_flight=[_step_record(t) for t in transitions
                                   if t.episode in in_flight])

  def _write_state(self, **state):
    tmp = epath.Path(f"{self.state_path}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps(json_safe({"settings": self.settings, "episodes": self.logged,
                                         **state})), encoding="utf-8")
    tmp.replace(self.state_path)  # a reader sees the old state or the new one

  def finish(self, transitions: Sequence[batch.Transition]):
    """The finished log: every episode in order and the final record."""
    if self.writes:
      tmp = f"{self.path}.tmp.{os.getpid()}"
      write_log(tmp, self.task, transitions)
      epath.Path(tmp).replace(self.path)


def _digest(settings: Any) -> str:
  return hashlib.sha256(json.dumps(json_safe(settings), sort_keys=True).encode()).hexdigest()


def _logged_episodes(path: str, count: int
                     ) -> tuple[list[str], list[list[batch.Transition]] | None]:
  """(lines, episodes) of the first `count` episodes in a log; episodes None when it has
  fewer. Lines after them (written after the resume state, or cut short) are left out."""
  lines, episodes, steps = [], [], []
  if count and epath.Path(path).exists():
    with epath.Path(path).open("r", encoding="utf-8") as f:
      for line in f:
        if len(episodes) == count:
          break
        record = json.loads(line)
        lines.append(line)
        if "veri_step" in record:
          steps.append(record)
        else:  # the episode's summary closes it
          episodes.append([_transition(r, done=i == len(steps) - 1)
                           for i, r in enumerate(steps)])
          steps = []
  return lines, episodes if len(episodes) == count else None


def _step_record(t: batch.Transition) -> dict:
  return {"sample_id": t.episode, "veri_step": t.attempt, "output": t.answer,
          "reward": t.reward, "info": t.info}


def _transition(record: dict, *, done: bool) -> batch.Transition:
  """A logged step as a transition (what scoring and logging read; no prompt or slot)."""
  return batch.Transition(int(record["sample_id"]), int(record["veri_step"]), -1, [],
                          record["output"], float(record["reward"]), done, False,
                          record["info"].get("Verify Info"), record["info"])


def _episodes(transitions: Sequence[batch.Transition]) -> list[list[batch.Transition]]:
  groups = collections.defaultdict(list)
  for t in transitions:
    groups[t.episode].append(t)
  return [groups[e] for e in sorted(groups)]


def score(bench: core.Benchmark, transitions: Sequence[batch.Transition]) -> dict:
  """The benchmark's metrics and their binomial error bars (see the module docstring)."""
  episodes = _episodes(transitions)
  return {"episodes": len(episodes), "steps": len(transitions),
          **rates(envs.task(bench.task).counts(bench, transitions, episodes))}


def stat_log(task: str, transitions: Sequence[batch.Transition]) -> dict:
  """The reference StatLogger's final record."""
  record = envs.task(task)
  names = {value: name for name, value in record.reward_names.items()}
  counts = collections.Counter(names.get(t.reward, AGGREGATED_ERROR) for t in transitions)
  episodes = _episodes(transitions)
  if record.solutions_are_episodes:  # route successes, as the reference's log_virl_success
    counts[CORRECT_SOLUTION] = sum(record.episode_success(e) for e in episodes)
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


def _episode_lines(task: str, episode: Sequence[batch.Transition]) -> str:
  """An episode's step lines and summary line in the JSONL log."""
  record = envs.task(task)
  records = [_step_record(t) for t in episode]
  records.append({"sample_id": episode[0].episode, "output": episode[-1].answer,
                  "reward": sum(t.reward for t in episode), "steps": len(episode),
                  "success": record.episode_success(episode), "info": episode[-1].info,
                  "hand": record.hand_id(episode[0].info),
                  "attempts": sum(record.graded(t) for t in episode)})
  return "".join(json.dumps(json_safe(r)) + "\n" for r in records)


def write_log(path: str, task: str, transitions: Sequence[batch.Transition]):
  """The JSONL step log, episode summaries and the final StatLogger record."""
  epath.Path(paths.absolute(path)).parent.mkdir(parents=True, exist_ok=True)
  epath.Path(path).write_text(
      "".join(_episode_lines(task, episode) for episode in _episodes(transitions))
      + json.dumps(json_safe(stat_log(task, transitions))) + "\n", encoding="utf-8")


def seed_log_name(benchmark_name: str, seed_index: int) -> str:
  """The log file of a benchmark's `seed_index`-th evaluation seed (eval.seed + index)."""
  return f"{benchmark_name}{f'.seed{seed_index}' if seed_index else ''}.jsonl"


OUTCOME_FIELDS = ("sample_id", "hand", "success", "attempts", "reward", "steps")


def outcomes(log_dir: str, benchmark_name: str) -> list[dict]:
  """The per-hand outcomes of one benchmark in an evaluation's `log_dir`, every evaluation
  seed's in turn (`<benchmark>.jsonl`, `.seed1.jsonl`, ... while they exist): one
  {eval_seed (the seed's index j: eval.seed + j), sample_id, hand, success, attempts,
  reward, steps} per episode, in (eval_seed, sample_id) order. `hand` and `attempts` are
  None in logs written before they were logged. A log without its final record (an
  evaluation still running or stopped) is a ValueError: its hands would not pair."""
  out, index = [], 0
  while True:
    path = os.path.join(log_dir, seed_log_name(benchmark_name, index))
    if not epath.Path(path).exists():
      break
    records = metrics.read_jsonl(path)
    if not records or "Step Number" not in records[-1]:
      raise ValueError(f"{path}: no final record; the evaluation did not finish")
    summaries = [r for r in records[:-1] if "veri_step" not in r]
    out += sorted(({"eval_seed": index, **{k: r.get(k) for k in OUTCOME_FIELDS}}
                   for r in summaries), key=lambda r: r["sample_id"])
    index += 1
  if not index:
    raise FileNotFoundError(f"{path}: no evaluation log of benchmark {benchmark_name!r}")
  return out


def paired(a: Sequence[dict], b: Sequence[dict], field: str = "success"
           ) -> tuple[np.ndarray, np.ndarray]:
  """Two evaluations' `outcomes` of one benchmark as aligned arrays of `field` (success as
  0/1), hand by hand. ValueError unless they hold the same episodes (eval_seed, sample_id)
  in the same order with the same hands (where both logged them)."""
  def episodes(records):
    return [(r["eval_seed"], r["sample_id"]) for r in records]

  if episodes(a) != episodes(b):
    raise ValueError(f"unpaired outcomes: {len(a)} and {len(b)} episodes, not the same "
                     "(eval_seed, sample_id) in the same order")
  for x, y in zip(a, b):
    if None not in (x["hand"], y["hand"]) and x["hand"] != y["hand"]:
      raise ValueError(f"unpaired outcomes: eval seed {x['eval_seed']} episode "
                       f"{x['sample_id']} is hand {x['hand']} in one and {y['hand']} in the other")
  return (np.array([float(r[field]) for r in a]), np.array([float(r[field]) for r in b]))


def evaluate(policy: Policy | ScriptedPolicy, config, *, log_dir: str | None = None,
             key=None, batch_size: int | None = None,
             benches: Sequence[core.Benchmark] | None = None,
             progress: bool = False, resume: Any = None) -> dict[str, dict]:
  """Runs the benchmarks `config.eval` selects (or `benches`); {benchmark: metrics}. Writes
  the JSONL logs under `log_dir` when given, and with `resume` (the policy's identity,
  anything JSON) continues a run of the same identity and settings that log_dir holds (the
  module docstring). `batch_size` defaults to `config.eval.batch_size`; `progress` shows a
  bar per benchmark."""
  results = {}
  batch_size = batch_size or config.eval.batch_size
  for i, bench in enumerate(benchmarks(config) if benches is None else benches):
    bench_key = None if key is None else jax.random.fold_in(key, i)
    runs = []
    for k in range(config.eval.seeds):  # seed k > 0: its own hands, keys and log
      seeded = dataclasses.replace(bench, seed=bench.seed + k)
      seed_key = bench_key if k == 0 or bench_key is None else jax.random.fold_in(bench_key, k)
      log = None
      if log_dir is not None:  # every process runs all episodes; process 0 writes
        settings = None if resume is None else {
            "policy": resume, "benchmark": repr(seeded), "batch_size": batch_size,
            "key": None if seed_key is None else np.asarray(jax.random.key_data(seed_key)),
            "sampling": getattr(policy, "sampling_kwargs", None)}
        log = EpisodeLog(os.path.join(log_dir, seed_log_name(bench.name, k)), bench.task,
                         settings)
      transitions = run(policy, seeded, batch_size=batch_size, key=seed_key,
                        progress=progress, log=log)
      if log is not None:
        log.finish(transitions)
      runs.append(transitions)
    results[bench.name] = pooled_score(bench, runs)
  if config.eval.probes:
    from jaxrl_gen import probes  # noqa: PLC0415  (regenerates expert data: on use only)

    if isinstance(policy, ScriptedPolicy):
      raise ValueError("config.eval.probes: the memorization probes answer prompts without "
                       "env states; give a policy(conversations, key), not a ScriptedPolicy")
    eval_key = jax.random.key(config_lib.seed_of(config, "eval")) if key is None else key
    probe_key = jax.random.fold_in(eval_key, PROBE_STREAM)
    results[probes.NAME] = rates(probes.run(policy, config, probe_key))
  return results


def pooled_score(bench: core.Benchmark, runs: Sequence[Sequence[batch.Transition]]) -> dict:
  """`score` over the episodes of every evaluation seed (episode ids kept apart), and with
  several seeds the spread of the headline metric across them (`<metric>_seed_std`)."""
  headline = envs.task(bench.task).headline(bench.name)
  offset = bench.episodes
  pooled = [dataclasses.replace(t, episode=t.episode + k * offset)
            for k, transitions in enumerate(runs) for t in transitions]
  out = dict(score(bench, pooled), task=bench.task, metric=headline)
  if len(runs) > 1:
    out[f"{headline}_seed_std"] = float(np.std([score(bench, t)[headline] for t in runs]))
  return out


def rates(counts: dict) -> dict:
  """(hits, total) counts as rates with binomial stderr; numbers kept as they are."""
  out = {}
  for name, value in counts.items():
    if isinstance(value, tuple):
      hits, total = value
      p = hits / total if total else 0.0
      out[name] = p
      out[name + "_stderr"] = math.sqrt(p * (1 - p) / total) if total else 0.0
    else:
      out[name] = value
  return out


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
                   str(scores.get("episodes", "")), str(scores.get("steps", ""))))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
  return "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:] + ["(* the headline metric)"])
