"""The experiment driver: equal-FLOPs SFT length, phase configs, the report, and a whole tiny
experiment run twice."""

import json

import pytest

import tiny_rl
from jaxrl_gen import eval as evaluation, experiment, metrics
from jaxrl_gen.models import mllama, presets

# the phases compile the same steps (pre-training and warm-up, a probe and its branch, reruns)
pytestmark = pytest.mark.usefixtures("compile_cache")


def test_sft_branch_gets_the_rl_branchs_flops():
  init = [{"step": 10, "train/tokens_seen": 1000.0}, {"step": 20, "train/tokens_seen": 2000.0}]
  per_step = 6 * 1_000 * 100.0  # 6 N D: 1,000 parameters, the warm-up's 100 tokens a step
  assert experiment.sft_steps_for(35 * per_step, init, 1_000) == 35
  assert experiment.sft_steps_for(35.5 * per_step, init, 1_000) == 36
  assert experiment.sft_steps_for(0.0, init, 1_000) == 1


def test_branch_config_sets_mode_and_keys(repo_root):
  import importlib.util  # noqa: PLC0415

  spec = importlib.util.spec_from_file_location("gp_cfg_exp", repo_root / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("l,tiny")
  rl = experiment.branch_config(config, "rl", **{"ppo.init": "/x", "ppo.num_updates": 3})
  assert (rl.mode, rl.ppo.init, rl.ppo.num_updates) == ("rl", "/x", 3)
  assert (config.mode, config.ppo.init) == ("play", "")  # the original is untouched
  with pytest.raises(KeyError):
    experiment.branch_config(config, "sft", **{"sft.no_such_key": 1})


def test_end_eval_dir_finds_each_phases_last_evaluation(tmp_path):
  for path in ("init/eval/results.json", "init/eval/sft_step_30/id.jsonl",
               "rl/eval/5/id.jsonl", "rl/eval/20/id.jsonl", "rl/eval/final/id.jsonl",
               "sft/eval/sft_step_9/id.jsonl", "sft/eval/sft_step_187/id.jsonl",
               "grpo/eval/final/results.json", "grpo/eval/3/id.jsonl"):
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text("{}")
  ends = {p: experiment.end_eval_dir(str(tmp_path / p)) for p in ("init", "rl", "sft", "grpo")}
  assert ends == {"init": str(tmp_path / "init" / "eval"),
                  "rl": str(tmp_path / "rl" / "eval" / "20"),  # final without results: unfinished
                  "sft": str(tmp_path / "sft" / "eval" / "sft_step_187"),
                  "grpo": str(tmp_path / "grpo" / "eval" / "final")}
  with pytest.raises(FileNotFoundError, match="no evaluation"):
    experiment.end_eval_dir(str(tmp_path / "pretrain"))


def test_report_writes_curves_plots_and_summaries(repo_root, tmp_path):
  config = _tiny_experiment_config(repo_root, "id,rule_ood")
  init = {"eval/id/success": 0.1, "eval/id/success_stderr": 0.02, "flops": 1e12,
          "eval/rule_ood/success": 0.05, "eval/rule_ood/success_stderr": 0.01,
          "eval/rule_ood/training_rule": 0.2, "eval/rule_ood/training_rule_stderr": 0.04}
  curves = [dict(init, branch=b) for b in ("rl", "sft")]
  curves += [dict(init, branch="rl", flops=2e12, step=3, **{
                 "eval/id/success": 0.2, "eval/id/success_stderr": 0.03, "train/lr": 1e-5}),
             dict(init, branch="sft", flops=2e12, step=40, **{
                 "eval/rule_ood/training_rule": 0.7,
                 "eval/memorization/nll_gap": 0.4})]
  summary = experiment._report(config, str(tmp_path), curves, {"init": init}, ("rl", "sft"))
  assert summary["rl"]["eval/id/success"] == 0.2 and summary["sft"]["flops"] == 2e12
  for figure in ("generalization.png", "probes.png"):
    assert (tmp_path / figure).stat().st_size > 1000
  lines = [json.loads(line) for line in (tmp_path / "curves.jsonl").read_text().splitlines()]
  assert len(lines) == 4 and "train/lr" not in lines[2]
  assert json.loads((tmp_path / "summary.json").read_text())["init"] == init
  table = (tmp_path / "summary.md").read_text().splitlines()
  assert table[0].startswith("| phase | FLOPs | id success | rule_ood success |")
  assert table[2].startswith("| init | 1e+12 | 10.0 ± 2.0% | 5.0 ± 1.0% | 20.0 ± 4.0% |")
  assert table[4].endswith("| 70.0 ± 4.0% | 0.400 |")  # the SFT end: its probes


def _tiny_experiment_config(repo_root, benchmarks: str):
  """GP-L on the tiny text model: 2 warm-up steps, 2 PPO updates of 8 generations, evaluations
  of 4 hands x 2 attempts with 6-token answers."""
  config = tiny_rl.config(repo_root)
  with config.unlocked():
    config.mode = "play"
    config.experiment.init_steps, config.experiment.rl_updates = 2, 2
    config.experiment.evals, config.log.every = 1, 1
    config.sft.batch_size = 8
    config.data.train_size, config.data.eval_size = 32, 0
    config.eval.benchmarks, config.eval.episodes = benchmarks, 4
    config.eval.verify_iter, config.eval.batch_size = 2, 4
  return config


def test_experiment_runs_its_branches_at_equal_flops_and_completes_on_rerun(repo_root, tmp_path):
  """The whole driver: pre-training on the rule family, warm-up, RL, SFT and a GRPO branch
  (the self-judged one; `grpo` is the same path on the verifier reward), curves, figure,
  summary. Pre-training is not counted in the x axis. SFT gets the steps and GRPO the updates
  (measured on a one-update probe) that the RL branch's FLOPs buy. Rerun with more
  benchmarks, it trains nothing again and evaluates each branch's end on them."""
  config = _tiny_experiment_config(repo_root, "id")
  with config.unlocked():
    config.experiment.pretrain_steps, config.experiment.rl_updates = 2, 1
    config.experiment.branches = "rl,sft,grpo_judge"
    config.grpo.groups, config.grpo.group_size, config.grpo.judge_max_new_tokens = 2, 2, 4
  summary = experiment.run_experiment(config, str(tmp_path))
  pretrain = json.loads((tmp_path / "pretrain" / "config.json").read_text())
  assert pretrain["data"]["rules"] == "family" and pretrain["sft"]["steps"] == 2
  warm_up = json.loads((tmp_path / "init" / "config.json").read_text())
  assert warm_up["data"]["rules"] == "env" and warm_up["sft"]["init"] == str(tmp_path / "pretrain")
  assert "eval/id/success" in summary["pretrain"]
  curves = metrics.read_jsonl(tmp_path / "curves.jsonl")
  init_flops = curves[0]["flops"]
  assert init_flops == metrics.read_jsonl(tmp_path / "init" / "metrics.jsonl")[-1]["train/flops"]
  phases = json.loads((tmp_path / "phase_seconds.json").read_text())
  assert list(phases)[:4] == ["pre-training", "pre-training eval", "warm-up", "warm-up eval"]
  branches = ("rl", "sft", "grpo_judge")
  assert sorted(c["branch"] for c in curves) == sorted(branches * 2)
  rl_end, sft_end = summary["rl"]["flops"], summary["sft"]["flops"]
  assert init_flops < rl_end and init_flops < sft_end
  # Equal FLOPs, as whole steps allow: the SFT branch runs the fewest steps whose 6 N D, at the
  # warm-up's tokens a step, reach the RL branch's FLOPs; GRPO the number of updates (each
  # costing what its probe's one did) closest to them.
  rl_flops = rl_end - init_flops
  sft_steps = max(r["step"] for r in metrics.read_jsonl(tmp_path / "sft" / "metrics.jsonl"))
  init_records = metrics.read_jsonl(tmp_path / "init" / "metrics.jsonl")
  tokens_a_step = init_records[-1]["train/tokens_seen"] / init_records[-1]["step"]
  step_flops = 6 * mllama.param_count(presets.from_config(config.model, config.mesh)) * (
      tokens_a_step)
  assert (sft_steps - 1) * step_flops < rl_flops <= sft_steps * step_flops
  per_update = metrics.read_jsonl(tmp_path / "grpo_judge_probe" / "metrics.jsonl")[-1][
      "train/flops"]
  judge = [r for r in metrics.read_jsonl(tmp_path / "grpo_judge" / "metrics.jsonl")
           if "ppo/policy_loss" in r]
  updates = len(judge)
  assert all(abs(updates * per_update - rl_flops) <= abs(n * per_update - rl_flops)
             for n in range(1, updates + 3))
  assert abs(summary["grpo_judge"]["flops"] - rl_end) <= per_update
  assert all("grpo/judge_score" in r for r in judge)
  assert all("eval/id/success_stderr" in summary[p] for p in ("init",) + branches)
  assert (tmp_path / "generalization.png").stat().st_size > 1000
  # Every phase's last evaluation logged the same hands, in order (what paired tests need).
  hands = {p: [r["hand"] for r in evaluation.outcomes(
      experiment.end_eval_dir(str(tmp_path / p)), "id")] for p in ("pretrain", "init") + branches}
  assert len(hands["init"]) == config.eval.episodes * config.eval.seeds
  assert all(h == hands["init"] for h in hands.values()), hands

  trained = {p: (tmp_path / p / "metrics.jsonl").read_text()
             for p in ("pretrain", "init") + branches}
  config.eval.benchmarks = "id,rule_ood"
  summary = experiment.run_experiment(config, str(tmp_path))
  assert {p: (tmp_path / p / "metrics.jsonl").read_text() for p in trained} == trained
  for phase in ("init",) + branches:
    assert 0.0 <= summary[phase]["eval/rule_ood/success"] <= 1.0, phase
  assert (tmp_path / "rl" / "eval" / "final" / "rule_ood.jsonl").exists()
  assert experiment.end_eval_dir(str(tmp_path / "rl")) == str(tmp_path / "rl" / "eval" / "final")
  assert summary["rl"]["flops"] == rl_end and summary["sft"]["flops"] == sft_end
  assert len(metrics.read_jsonl(tmp_path / "curves.jsonl")) == 6


class _Bar:
  """A progress bar as JobClock sees it: a count, update() and a description."""

  def __init__(self):
    self.n, self.description = 0, ""

  def update(self, n=1):
    self.n += n

  def set_description_str(self, text, refresh=True):
    self.description = text


def test_job_eta_ignores_bursts_of_asynchronously_dispatched_steps(monkeypatch):
  """The whole job's ETA in every phase's bar: a kind's seconds a unit are measured over at
  least a few seconds (steps dispatched asynchronously finish in bursts: eight in 0.1 s, then
  a wait), carried into the next phase of that kind, and the job's share only grows."""
  now = [0.0]
  monkeypatch.setattr(metrics.time, "perf_counter", lambda: now[0])
  job = metrics.JobClock([("pre-training", "sft", 10), ("warm-up", "sft", 10)], {"sft": 1.0})
  assert job.eta() == 20.0
  shares = []

  def unit(at):
    now[0] = at
    bar.update()
    shares.append(float(bar.description.split("job ")[1].split("%")[0]))

  job.phase("pre-training")
  bar = _Bar()
  job.attach(bar, "phase 1/2 pre-training")
  unit(3.0)  # the first step compiles
  for k in range(8):
    unit(3.1 + 0.01 * k)  # a burst: its 0.01 s a step is not the rate
  assert job.eta() == 11.0  # the prior's 1 s a step for the 11 steps left
  unit(12.1)  # nine steps in 9.1 s since the first: a window long enough to measure
  assert job.rates["sft"] == pytest.approx(9.1 / 9)
  job.phase("warm-up")
  bar = _Bar()
  job.attach(bar, "phase 2/2 warm-up")
  unit(15.0)
  for k in range(8):
    unit(15.1 + 0.01 * k)
  assert job.rates["sft"] == pytest.approx(9.1 / 9)  # the pre-training's, not the burst's
  assert job.eta() == pytest.approx(1 * 9.1 / 9)
  assert shares == sorted(shares) and "ETA 0:01" in bar.description
