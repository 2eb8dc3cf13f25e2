"""The tiny RL run the RL tests share: GP-L on the tiny text model, 2 updates of 8
generations from 4 lock-step episodes, 6-token answers, a checkpoint every update."""

import importlib.util
import pathlib


def config(repo_root: pathlib.Path):
  spec = importlib.util.spec_from_file_location("gp_config", repo_root / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("l,rl,tiny-text")
  with config.unlocked():
    config.ppo.num_updates, config.ppo.num_steps, config.ppo.num_envs = 2, 8, 4
    config.ppo.grad_accum, config.ppo.eval_every = 2, 0
    config.ppo.value_hidden = (16,)
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
