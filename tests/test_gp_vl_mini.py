"""The GP-VL miniature (configs/gp_vl_mini.py) end to end at a toy size: pre-training, warm-up,
the RL and SFT branches at equal FLOPs, every phase evaluated on the five GP-VL benchmarks,
the figures; and red suits never in any training data."""

import importlib.util
import json

import ml_collections
import pytest

from jaxrl_gen import experiment, metrics
from jaxrl_gen.data import sources

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("compile_cache")]

BENCHMARKS = ("id", "visual_ood", "rule_ood", "recognition_id", "recognition_visual_ood")


def _config(repo_root, arg: str = ""):
  spec = importlib.util.spec_from_file_location("gp_vl_mini_cfg",
                                                repo_root / "configs" / "gp_vl_mini.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_the_preset_reads_the_canvas_at_its_own_size(repo_root):
  """The observation is rendered at the vision tower's tile size (no resize, one tile) and
  the five benchmarks are the ones every phase evaluates."""
  from jaxrl_gen.models import presets  # noqa: PLC0415

  config = _config(repo_root)
  vision = presets.from_config(config.model, config.mesh).vision
  assert (config.env.resolution, vision.image_size, vision.max_num_tiles) == (96, 96, 1)
  assert (config.env.color, config.env.language_only) == ("black", False)
  assert tuple(config.eval.benchmarks.split(",")) == BENCHMARKS


def _toy(repo_root):
  config = _config(repo_root)
  with config.unlocked():
    config.experiment.pretrain_steps, config.experiment.init_steps = 2, 2
    config.experiment.rl_updates, config.experiment.evals = 1, 1
    config.sft.batch_size, config.data.eval_size = 8, 0
    config.ppo.num_envs = config.ppo.num_steps = 8
    config.ppo.ppo_epochs, config.ppo.minibatches, config.ppo.value_hidden = 1, 1, (16,)
    config.sampling.max_new_tokens = 8
    config.eval.episodes, config.eval.seeds, config.eval.probes = 4, 1, 4
    config.eval.verify_iter, config.eval.batch_size = 2, 4
    config.checkpoint.async_save = False
    config.log.progress = config.log.tensorboard = False
  return config


def test_gp_vl_miniature_runs_every_phase_on_the_five_benchmarks(repo_root, tmp_path):
  config = _toy(repo_root)
  summary = experiment.run_experiment(config, str(tmp_path))
  for phase in ("pretrain", "init", "rl", "sft"):
    for name in BENCHMARKS:
      metric = "recognition_accuracy" if name.startswith("recognition_") else "success"
      assert 0.0 <= summary[phase][f"eval/{name}/{metric}"] <= 1.0, (phase, name)
      assert f"eval/{name}/{metric}_stderr" in summary[phase], (phase, name)
  assert summary["rl"]["flops"] > summary["init"]["flops"]
  assert summary["sft"]["flops"] > summary["init"]["flops"]
  for figure in ("generalization.png", "recognition.png", "probes.png"):
    assert (tmp_path / figure).stat().st_size > 1000, figure
  assert summary["recognition_figure"].endswith("recognition.png")

  # What each phase trained on: black suits only (red suits are the visual-OOD benchmark).
  for phase in ("pretrain", "init", "sft"):
    saved = ml_collections.ConfigDict(json.loads((tmp_path / phase / "config.json").read_text()))
    assert saved.env.color == "black", phase
    data = sources.from_config(saved, str(tmp_path / phase))
    cards = [card for split in (data.train, data.test) if split is not None
             for i in range(len(split)) for card in json.loads(split[i]["meta"])["cards"]]
    assert cards and {card[0] for card in cards} <= {"S", "C"}, phase
  assert json.loads((tmp_path / "rl" / "config.json").read_text())["env"]["color"] == "black"
  rl = [r for r in metrics.read_jsonl(tmp_path / "rl" / "metrics.jsonl") if "ppo/policy_loss" in r]
  assert len(rl) == 1

