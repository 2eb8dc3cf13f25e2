"""The experiment driver's bookkeeping: equal-FLOPs SFT length, phase configs, the report."""

import json

import pytest

from jaxrl_gen import experiment, metrics


def test_sft_branch_gets_the_rl_branchs_flops():
  init = [{"step": 10, "train/tokens_seen": 1000.0}, {"step": 20, "train/tokens_seen": 2000.0}]
  per_step = metrics.training_flops(1_000, 100.0)  # 100 tokens per step
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


def test_report_writes_curves_plot_and_summary(tmp_path):
  init = {"eval/id/success": 0.1, "eval/id/success_stderr": 0.02}
  curves = [dict(init, branch=b, flops=1e12) for b in ("rl", "sft")]
  curves += [{"branch": "rl", "flops": 2e12, "step": 3, "eval/id/success": 0.2,
              "eval/id/success_stderr": 0.03, "train/lr": 1e-5},
             {"branch": "sft", "flops": 2e12, "step": 40, "eval/id/success": 0.05,
              "eval/id/success_stderr": 0.01}]
  summary = experiment._report(str(tmp_path), curves, init)
  assert summary["rl"]["eval/id/success"] == 0.2 and summary["sft"]["flops"] == 2e12
  assert (tmp_path / "generalization.png").stat().st_size > 1000
  lines = [json.loads(line) for line in (tmp_path / "curves.jsonl").read_text().splitlines()]
  assert len(lines) == 4 and "train/lr" not in lines[2]
  assert json.loads((tmp_path / "summary.json").read_text())["init"] == init
