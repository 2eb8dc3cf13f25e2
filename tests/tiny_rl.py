"""The tiny RL run the RL tests share: GP-L on the tiny text model, 2 updates of 8
generations from 4 lock-step episodes, 6-token answers, a checkpoint every update."""

import importlib.util
import json
import pathlib

import pytest


def config(repo_root: pathlib.Path, **ppo):
  """The tiny PPO run, with these `config.ppo` fields changed."""
  spec = importlib.util.spec_from_file_location("gp_config", repo_root / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("l,rl,tiny-text")
  with config.unlocked():
    config.ppo.num_updates, config.ppo.num_steps, config.ppo.num_envs = 2, 8, 4
    config.ppo.grad_accum, config.ppo.eval_every = 2, 0
    config.ppo.value_hidden = (16,)
    config.ppo.update(ppo)
    config.sampling.max_new_tokens = 6
    config.sampling.temperature = 1.0
    config.checkpoint.every, config.checkpoint.async_save = 1, False
    config.log.progress = config.log.tensorboard = False
  return config


def grpo_config(repo_root: pathlib.Path, **grpo):
  """The tiny GRPO run: GP-L on the tiny text model, 2 updates of 2 groups x 4 single-attempt
  episodes, 6-token answers, a checkpoint every update."""
  spec = importlib.util.spec_from_file_location("gp_config", repo_root / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("l,grpo,tiny-text")
  with config.unlocked():
    config.grpo.groups, config.grpo.group_size = 2, 4
    config.grpo.judge_max_new_tokens = 8
    config.grpo.update(grpo)
    config.env.verification = False
    config.ppo.num_updates, config.ppo.grad_accum, config.ppo.eval_every = 2, 2, 0
    config.sampling.max_new_tokens = 6
    config.sampling.temperature = 1.0
    config.checkpoint.every, config.checkpoint.async_save = 1, False
    config.log.progress = config.log.tensorboard = False
  return config


class Killed(Exception):
  pass


def records(workdir: pathlib.Path) -> list[dict]:
  with open(workdir / "metrics.jsonl") as f:
    return [json.loads(line) for line in f]


def whole_and_resumed(run, config, tmp_path: pathlib.Path, monkeypatch) -> tuple[list, list]:
  """The metric records of `run(config, workdir)` run whole, and run killed right after its
  first checkpoint then rerun (which resumes)."""
  from jaxrl_gen.train import checkpoint as checkpoint_lib  # noqa: PLC0415

  run(config, str(tmp_path / "whole"))
  save = checkpoint_lib.Checkpointer.save

  def save_then_die(self, step, *args, **kwargs):
    started = save(self, step, *args, **kwargs)
    if step == 1:
      self.wait()
      raise Killed
    return started

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", save_then_die)
  with pytest.raises(Killed):
    run(config, str(tmp_path / "killed"))
  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", save)
  run(config, str(tmp_path / "killed"))
  return records(tmp_path / "whole"), records(tmp_path / "killed")


def assert_same_records(whole: list[dict], resumed: list[dict]):
  """Equal metrics (timings aside), step by step."""
  assert [r["step"] for r in resumed] == [r["step"] for r in whole]
  for a, b in zip(whole, resumed):
    for key in a:
      if not key.startswith("time/"):
        assert a[key] == b[key], (a["step"], key)
