"""The paper's experiment (`reference.md` §1, §6): one SFT warm-up, then two branches from it
at equal training compute, more SFT and PPO, evaluated on the ID and OOD benchmarks along
the way, drawn as success against training FLOPs (the shape of Fig. 5/6).

    run_experiment(config, workdir)     # jaxrl-gen experiment --config=configs/gp_mini.py

<workdir>/pretrain  with `experiment.pretrain_steps`: SFT from random init on expert answers
                under rules drawn from a family (`data.rules='family'`), evaluated once
<workdir>/init  the SFT warm-up (config.experiment.init_steps steps; from the pre-trained
                model when there is one), evaluated once: the branches' shared init
<workdir>/rl    PPO from the warm-up (config.ppo, experiment.rl_updates updates)
<workdir>/sft   SFT from the warm-up, as many steps as the RL branch's FLOPs buy
<workdir>/grpo, <workdir>/grpo_judge   with `experiment.branches` naming them: GRPO from the
                warm-up on the verifier's reward, and on the self-judged reward (no verifier
                reward; single-attempt episodes), each for the updates the RL branch's FLOPs
                buy (measured on a one-update probe run, <workdir>/<branch>_probe)
<workdir>/curves.jsonl, generalization.png, probes.png (with `eval.probes` or a rule-OOD
                benchmark: the memorization probes against FLOPs), recognition.png (with
                GP-VL's recognition benchmarks: success against recognition accuracy, the
                paper's Fig. 8), summary.json, summary.md (the table of every phase's end)

Each phase's last evaluation keeps its per-hand JSONL logs (`jaxrl_gen.eval`: one summary line
per hand with its `hand`, `success` and `attempts`) at `end_eval_dir(<workdir>/<phase>)`:
pretrain/eval and init/eval; a branch's last in-run evaluation, rl/eval/<updates> (GRPO
alike) or sft/eval/sft_step_<steps>, or its eval/final when those missed the end. Every phase
evaluates config.eval's hands, so `eval.outcomes` of two phases pair hand by hand.

Every phase is an ordinary resumable run, so a killed experiment rerun with the same command
continues where it stopped; rerun with more benchmarks (config.eval.benchmarks), it trains
nothing and evaluates the warm-up and each branch's end on them. Each training phase's bar
shows `phase k/N` and the whole job's ETA (`metrics.JobClock`). FLOPs are counted as the
paper does: the branches' x axis is the warm-up's 6 N D_init plus the branch's own (SFT:
6 N D; RL: 6 N D_RL + 2 N D_buffer); pre-training, like the 11B model's, is not counted.
"""

from __future__ import annotations

import json
import math
import os

import jax
import ml_collections
from absl import logging
from etils import epath

from jaxrl_gen import (config_lib, envs, eval as eval_lib, metrics as metrics_lib, parallel,
                       plots, sampling)
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.policy import ModelPolicy
from jaxrl_gen.train import loop as sft_loop, restore, rl


def branch_config(config, mode: str, **changes) -> ml_collections.ConfigDict:
  """`config` for one phase: its mode and the `section.key` values in `changes`."""
  out = config.copy_and_resolve_references()
  with out.unlocked():
    out.mode = mode
    for dotted, value in changes.items():
      section, key = dotted.split(".")
      if key not in out[section]:
        raise KeyError(f"config.{dotted}: no such key")
      out[section][key] = value
  return out


def evaluate_checkpoint(config, source: str, log_dir: str) -> dict:
  """{'eval/...': value} of the model in `source` on config.eval's benchmarks, cached in
  `log_dir/results.json` with the config.eval it answered (another config.eval evaluates
  again)."""
  cache = os.path.join(log_dir, "results.json")
  settings = config.eval.to_dict()
  if epath.Path(cache).exists():
    cached = json.loads(epath.Path(cache).read_text())
    if cached.get("eval") == settings:
      return cached["results"]
  mesh = parallel.make_mesh(config.mesh.shape)
  model, processor = restore.load_with_processor(config, source, mesh)
  policy = ModelPolicy(model, processor, mesh=mesh,
                       sampling_kwargs=sampling.kwargs_from_config(config.sampling))
  results = eval_lib.flat_metrics(eval_lib.evaluate(
      policy, config, log_dir=log_dir, key=jax.random.key(config_lib.seed_of(config, "eval")),
      resume={"checkpoint": restore.describe(source),
              "config": json.loads(config.to_json_best_effort())}))
  if jax.process_index() == 0:
    epath.Path(log_dir).mkdir(parents=True, exist_ok=True)
    epath.Path(cache).write_text(json.dumps({"eval": settings, "results": results}, indent=2))
  return results


def _records(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  return metrics_lib.read_jsonl(path) if epath.Path(path).exists() else []


def _last(records: list[dict], key: str) -> float:
  values = [r[key] for r in records if key in r]
  return float(values[-1]) if values else 0.0


def sft_steps_for(flops: float, init_records: list[dict], num_params: int) -> int:
  """SFT steps whose 6 N D equals `flops`, at the warm-up's mean tokens per step."""
  steps = max(r["step"] for r in init_records)
  tokens_per_step = _last(init_records, "train/tokens_seen") / steps
  return max(1, math.ceil(flops / metrics_lib.training_flops(num_params, tokens_per_step)))


def branch_curve(config, run_dir: str, init_flops: float) -> list[dict]:
  """The evaluations along a finished branch, each at its training FLOPs. The branch's end
  is always a point with every benchmark config.eval names: when the run's own evaluations
  miss it (evaluated elsewhere, or with fewer benchmarks), its final checkpoint is evaluated
  (`run_dir/eval/final`)."""
  points, flops = [], 0.0
  for record in _records(run_dir):
    flops = record.get("train/flops", flops)  # SFT logs an evaluation apart from its step
    if any(k.startswith("eval/") for k in record if k.endswith("_stderr")):
      points.append(dict(record, flops=init_flops + flops))
  end = init_flops + flops
  names = [bench.name for bench in eval_lib.benchmarks(config)]
  complete = bool(points) and points[-1]["flops"] >= end and all(
      any(k.startswith(f"eval/{name}/") for k in points[-1]) for name in names)
  if not complete:
    final = evaluate_checkpoint(config, run_dir, os.path.join(run_dir, "eval", "final"))
    points = [p for p in points if p["flops"] < end] + [dict(final, flops=end)]
  return points


def end_eval_dir(run_dir: str) -> str:
  """The log dir of a phase's last evaluation (the module docstring): eval/final or eval
  (`evaluate_checkpoint`'s, with their results.json), else the highest-numbered in-run
  evaluation, eval/<update> (RL) or eval/sft_step_<step> (SFT)."""
  root = os.path.join(run_dir, "eval")
  for candidate in (os.path.join(root, "final"), root):
    if epath.Path(candidate, "results.json").exists():
      return candidate
  steps = {int(name.removeprefix("sft_step_")): os.path.join(root, name)
           for name in ([p.name for p in epath.Path(root).iterdir()]
                        if epath.Path(root).is_dir() else ())
           if name.removeprefix("sft_step_").isdigit()}
  if not steps:
    raise FileNotFoundError(f"{root}: no evaluation of {run_dir}")
  return steps[max(steps)]


# The GRPO branches: the reward they train on, the group estimator, and the config keys they
# change besides (the self-judged branch's episodes show no verifier feedback).
GRPO_BRANCHES = {"grpo": ("verifier", "grpo", {}),
                 "grpo_judge": ("self_judge", "drgrpo", {"env.verification": False})}
# A group needs varied samples of one prompt: GRPO branches roll out at temperature 1.
GRPO_ROLLOUT_TEMPERATURE = 1.0
BRANCHES = ("rl", "sft") + tuple(GRPO_BRANCHES)


def grpo_branch_config(config, branch: str, init_dir: str, updates: int, every: int
                       ) -> ml_collections.ConfigDict:
  """The config of a GRPO branch from the warm-up in `init_dir` (mode grpo's learner settings
  on config.ppo, `config_lib.ppo_config`)."""
  reward, estimator, extra = GRPO_BRANCHES[branch]
  rows = config.grpo.groups * config.grpo.group_size
  return branch_config(config, "grpo", **{
      "ppo.init": init_dir, "ppo.num_updates": updates, "ppo.eval_every": every,
      "ppo.advantage": estimator, "ppo.loss": "grpo_clip", "ppo.clip": 0.2,
      "ppo.kl_coef": 0.04, "ppo.ppo_epochs": 1, "ppo.num_envs": rows, "ppo.num_steps": rows,
      "ppo.rollout_temperature": GRPO_ROLLOUT_TEMPERATURE, "grpo.reward": reward, **extra})


def grpo_updates_for(flops: float, config, branch: str, init_dir: str, probe_dir: str,
                     **progress) -> int:
  """GRPO updates whose training FLOPs equal `flops`, at the rate of a one-update probe run
  (`progress`: the run's bar label and job clock)."""
  rl.run_rl(grpo_branch_config(config, branch, init_dir, 1, 0), probe_dir, **progress)
  per_update = _last(_records(probe_dir), "train/flops")
  return max(1, round(flops / per_update))


# A unit's seconds before this machine measured one (the miniature's phases on 2 CPU cores,
# benchmarks/mini_study.py): they only shape the first minutes' ETA.
PRIORS = {"sft": 0.4, "rl": 10.0, "eval": 40.0}
SFT_STEPS_PER_RL_UPDATE = 15  # the SFT branch's length before the RL branch's FLOPs are known


def eval_every(units: int, evals: int) -> int:
  """The cadence that evaluates a run of `units` steps `evals` times, the last at its end."""
  return max(1, -(-units // max(evals, 1)))


def parse_branches(config) -> tuple[str, ...]:
  exp = config.experiment
  branches = tuple(b.strip() for b in exp.branches.split(",") if b.strip())
  unknown = [b for b in branches if b not in BRANCHES]
  if unknown or "rl" not in branches:
    raise ValueError(f"config.experiment.branches={exp.branches!r}: a comma list of "
                     f"{', '.join(BRANCHES)} with rl (the FLOPs budget) in it")
  return branches


def job_plan(config, branches) -> list[tuple[str, str, int]]:
  """The experiment's phases as (name, kind, units) in the order they run."""
  exp = config.experiment
  phases = []
  if exp.pretrain_steps:
    phases += [("pre-training", "sft", exp.pretrain_steps), ("pre-training eval", "eval", 1)]
  phases += [("warm-up", "sft", exp.init_steps), ("warm-up eval", "eval", 1),
             ("rl", "rl", exp.rl_updates)]
  if "sft" in branches:
    phases.append(("sft", "sft", exp.rl_updates * SFT_STEPS_PER_RL_UPDATE))
  for branch in branches:
    if branch in GRPO_BRANCHES:
      phases += [(f"{branch} probe", "rl", 1), (branch, "rl", exp.rl_updates)]
  # Branch ends that their own evaluations missed (none when experiment.evals divides).
  return phases + [("final evaluations", "eval", 0)]


def run_experiment(config, workdir: str, allow_changes: bool = False) -> dict:
  """Runs (or resumes) every phase; returns the summary (also in <workdir>/summary.json).
  `allow_changes`: phases resume even where their saved config differs (`run.check_workdir`)."""
  exp = config.experiment
  branches = parse_branches(config)
  dirs = {name: os.path.join(workdir, name) for name in ("pretrain", "init") + branches}
  num_params = mllama.param_count(presets.from_config(config.model, config.mesh))
  plan = job_plan(config, branches)
  job = metrics_lib.JobClock(plan, PRIORS)
  trained = [name for name, kind, _ in plan if kind != "eval"]

  def start(name: str) -> dict:
    """Enters a training phase: its progress bar's label, the job's clock, the resume rule."""
    job.phase(name)
    return {"desc": f"phase {trained.index(name) + 1}/{len(trained)} {name}", "job": job,
            "allow_changes": allow_changes}

  evaluations = {}
  init_changes = {"sft.steps": exp.init_steps, "optim.lr": exp.init_lr or config.optim.lr}
  if exp.pretrain_steps:
    pretrain_config = branch_config(config, "sft", **{
        "sft.steps": exp.pretrain_steps, "data.rules": "family",
        "data.train_size": exp.pretrain_steps * config.sft.batch_size,
        "optim.lr": exp.pretrain_lr or config.optim.lr})
    logging.warning("experiment: pre-training (%d steps on the rule family) in %s",
                    exp.pretrain_steps, dirs["pretrain"])
    sft_loop.run_sft(pretrain_config, dirs["pretrain"], **start("pre-training"))
    with job.timed("pre-training eval"):
      evaluations["pretrain"] = evaluate_checkpoint(config, dirs["pretrain"],
                                                    os.path.join(dirs["pretrain"], "eval"))
    init_changes["sft.init"] = dirs["pretrain"]
  init_config = branch_config(config, "sft", **init_changes)
  logging.warning("experiment: SFT warm-up (%d steps) in %s", exp.init_steps, dirs["init"])
  sft_loop.run_sft(init_config, dirs["init"], **start("warm-up"))
  init_records = _records(dirs["init"])
  init_flops = _last(init_records, "train/flops")
  with job.timed("warm-up eval"):
    evaluations["init"] = dict(evaluate_checkpoint(config, dirs["init"],
                                                   os.path.join(dirs["init"], "eval")),
                               flops=init_flops)

  every = eval_every(exp.rl_updates, exp.evals)
  rl_config = branch_config(config, "rl", **{
      "ppo.init": dirs["init"], "ppo.num_updates": exp.rl_updates, "ppo.eval_every": every})
  logging.warning("experiment: RL branch (%d updates) in %s", exp.rl_updates, dirs["rl"])
  rl.run_rl(rl_config, dirs["rl"], **start("rl"))
  rl_flops = _last(_records(dirs["rl"]), "train/flops")

  if "sft" in branches:
    steps = sft_steps_for(rl_flops, init_records, num_params)
    job.plan("sft", steps)
    sft_config = branch_config(config, "sft", **{
        "sft.init": dirs["init"], "sft.steps": steps,
        "sft.eval_every": eval_every(steps, exp.evals),
        "sft.eval_episodes": config.eval.episodes})
    logging.warning("experiment: SFT branch (%d steps, the RL branch's %.3g FLOPs) in %s",
                    steps, rl_flops, dirs["sft"])
    sft_loop.run_sft(sft_config, dirs["sft"], **start("sft"))

  for branch in branches:
    if branch not in GRPO_BRANCHES:
      continue
    updates = grpo_updates_for(rl_flops, config, branch, dirs["init"],
                               os.path.join(workdir, f"{branch}_probe"),
                               **start(f"{branch} probe"))
    job.plan(branch, updates)
    logging.warning("experiment: %s branch (%d updates, the RL branch's %.3g FLOPs) in %s",
                    branch, updates, rl_flops, dirs[branch])
    rl.run_rl(grpo_branch_config(config, branch, dirs["init"], updates,
                                 eval_every(updates, exp.evals)), dirs[branch],
              **start(branch))
  job.phase("final evaluations")  # each branch's end on every benchmark, when missing
  curves = [dict(evaluations["init"], branch=branch) for branch in branches]
  for branch in branches:
    curves += [dict(point, branch=branch)
               for point in branch_curve(config, dirs[branch], init_flops)]
  job.finish()
  _write_json(os.path.join(workdir, "phase_seconds.json"), job.seconds)
  return _report(config, workdir, curves, evaluations, branches)


def _write_json(path: str, value) -> None:
  epath.Path(path).write_text(json.dumps(value, indent=2))


def _report(config, workdir: str, curves: list[dict], evaluations: dict, branches) -> dict:
  """curves.jsonl, the figures, summary.json and summary.md (the table of the ends)."""
  path = os.path.join(workdir, "curves.jsonl")
  epath.Path(path).write_text("".join(
      json.dumps({k: v for k, v in record.items()
                  if k in ("branch", "flops", "step") or k.startswith("eval/")}) + "\n"
      for record in curves))
  records = plots.read_records([path])
  names = [bench.name for bench in eval_lib.benchmarks(config)]
  summary = {**evaluations,
             "figure": plots.plot(records, os.path.join(workdir, "generalization.png"),
                                  panels=names)}
  if config.eval.probes or any(f"eval/{n}/training_rule" in r for r in records for n in names):
    summary["probes_figure"] = plots.plot_probes(records, os.path.join(workdir, "probes.png"))
  if any(n.startswith("recognition_") for n in names):  # GP-VL: the paper's Fig. 8 shape
    summary["recognition_figure"] = plots.plot_recognition(
        records, os.path.join(workdir, "recognition.png"))
  for branch in branches:
    last = [r for r in curves if r["branch"] == branch][-1]
    summary[branch] = {k: v for k, v in last.items() if k.startswith("eval/") or k == "flops"}
  _write_json(os.path.join(workdir, "summary.json"), summary)
  rows = {name: summary[name] for name in ("pretrain", "init", *branches) if name in summary}
  headlines = [(n, envs.task(config.task).headline(n)) for n in names]
  epath.Path(workdir, "summary.md").write_text(summary_table(rows, headlines) + "\n")
  return summary


def summary_table(rows: dict[str, dict], benchmarks) -> str:
  """A Markdown table: one row per phase end, the (benchmark, headline metric) scores with
  error bars and the memorization probes where measured."""
  columns = [(f"{name} {metric}", f"eval/{name}/{metric}") for name, metric in benchmarks]
  columns += [(label, key) for label, key in PROBE_COLUMNS
              if any(key in r for r in rows.values())]
  lines = ["| phase | FLOPs | " + " | ".join(label for label, _ in columns) + " |",
           "|---" * (len(columns) + 2) + "|"]
  for phase, r in rows.items():
    cells = [phase, f"{r['flops']:.3g}" if "flops" in r else "-"]
    for _, key in columns:
      if key not in r:
        cells.append("-")
      elif key + "_stderr" in r:
        cells.append(f"{100 * r[key]:.1f} ± {100 * r[key + '_stderr']:.1f}%")
      else:
        cells.append(f"{r[key]:.3f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


PROBE_COLUMNS = (("OOD answers using J/Q/K=10", "eval/rule_ood/training_rule"),
                 ("OOD first answers that parse", "eval/rule_ood/parse_rate_first"),
                 ("exact match, train", "eval/memorization/exact_match_train"),
                 ("exact match, held out", "eval/memorization/exact_match_heldout"),
                 ("NLL gap (held out - train)", "eval/memorization/nll_gap"))
