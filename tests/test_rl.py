"""The model-backed RL path: rollout buffers scored teacher-forced agree with the sampler,
PPO through sampler -> buffer -> re-score -> update learns a checkable toy task, and a killed
RL run resumes exactly."""

import json
import os

import jax
import numpy as np
import pytest

from jaxrl_gen import policy as policy_lib
from jaxrl_gen import sampling
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.train import checkpoint as checkpoint_lib
from jaxrl_gen.train import learner, ppo, rl, rollout
from jaxrl_gen.train import state as state_lib


def _generations(model, prompts, key, temperature, max_new_tokens, top_k=0):
  result = sampling.generate(model, prompts, key=key, max_new_tokens=max_new_tokens,
                             temperature=temperature, eos_ids=(1,), top_k=top_k)
  return [policy_lib.Generation(np.asarray(p, np.int32), None, result.tokens[i, :n],
                                result.logprobs[i, :n], result.prompt_hidden[i],
                                bool(result.finished[i]), "")
          for i, (p, n) in enumerate(zip(prompts, result.lengths))]


def _net(value_hidden=(32,)):
  model = mllama.create(presets.get("tiny-text"), seed=0)
  return learner.actor_critic(model, value_hidden, seed=1)


def _action_masks(generations, length):
  spans = [rollout.action_span.Span(np.zeros(len(g.tokens), np.float32),
                                    np.ones(len(g.tokens), np.float32)) for g in generations]
  return rollout.action_span.stack(spans, length)


def test_rescoring_equals_the_samplers_logprobs_and_values():
  net = _net()
  rng = np.random.default_rng(0)
  prompts = [rng.integers(2, 500, size=n).tolist() for n in (5, 17, 9)]
  gens = _generations(net.model, prompts, jax.random.key(3), temperature=0.7, max_new_tokens=12)
  buffer = rollout.sequences(gens, pad_id=0, image_token_id=None)
  buffer.update(_action_masks(gens, buffer["output_ids"].shape[1]))
  tx = ppo.make_optimizer(ppo.PPOConfig())
  graphdef, state = state_lib.create(net, tx, seed=0)
  scored = learner.rescore_in_chunks(graphdef, state, buffer, temperature=0.7, thought_coef=0.5,
                                     chunk=2)
  for i, g in enumerate(gens):
    n = len(g.tokens)
    np.testing.assert_allclose(scored["token_logp"][i, :n], g.logprobs, atol=1e-4)
    assert scored["old_logp"][i] == pytest.approx(float(g.logprobs.sum()), abs=1e-3)
  values = np.asarray(net.value(np.stack([g.prompt_hidden for g in gens])))
  np.testing.assert_allclose(scored["old_value"], values, atol=1e-5)


def test_ppo_learns_to_say_an_even_token():
  """A one-turn bandit on the real stack: the policy picks among its 8 likeliest first
  tokens (top-k 8; log-probs of the whole distribution, as always) and is rewarded for an
  even token id. From about half, PPO (clip 0.2) must make it nearly always even."""
  net = _net()
  cfg = ppo.PPOConfig(num_updates=7, ppo_epochs=2, minibatches=2, grad_accum=1, lr=3e-3,
                      end_lr=3e-3, clip=0.2)
  tx = ppo.make_optimizer(cfg)
  graphdef, state = state_lib.create(net, tx, seed=0)
  update = learner.jit_update(graphdef, tx, cfg, temperature=1.0)
  prompts = [[5, 6, 7, 8]] * 64
  rates = []
  for step in range(cfg.num_updates):
    model = nnx_model(graphdef, state)
    gens = _generations(model, prompts, jax.random.key(100 + step), 1.0, max_new_tokens=1,
                        top_k=8)
    rewards = np.array([float(g.tokens[0] % 2 == 0) for g in gens], np.float32)
    rates.append(rewards.mean())
    buffer = rollout.sequences(gens, pad_id=0, image_token_id=None)
    buffer.update(_action_masks(gens, buffer["output_ids"].shape[1]))
    buffer["valid"] = np.ones(len(gens), bool)
    scored = learner.rescore_in_chunks(graphdef, state, buffer, temperature=1.0,
                                       thought_coef=cfg.thought_coef, chunk=64)
    advantages, returns = ppo.compute_advantages(
        rewards[None], scored["old_value"][None], np.ones((1, 64), bool),
        np.zeros((1, 64), bool), np.zeros(64, np.float32), cfg)
    buffer.update(old_logp=scored["old_logp"], old_value=scored["old_value"],
                  advantages=np.asarray(advantages)[0], returns=np.asarray(returns)[0])
    state, metrics = update(state, buffer, jax.random.key(step))
    assert int(metrics["skipped"]) == 0
  print("even-token rate per update:", rates)
  assert rates[0] < 0.75 and np.mean(rates[-2:]) > rates[0] + 0.2, rates


def nnx_model(graphdef, state):
  from flax import nnx  # noqa: PLC0415
  return nnx.merge(graphdef, state.params, state.frozen, state.rest).model


def _rl_config(repo_root):
  import importlib.util  # noqa: PLC0415

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


class _Killed(Exception):
  pass


def test_killed_rl_run_resumes_exactly(repo_root, tmp_path, monkeypatch):
  config = _rl_config(repo_root)
  rl.run_rl(config, str(tmp_path / "whole"))

  save = checkpoint_lib.Checkpointer.save

  def save_then_die(self, step, *args, **kwargs):
    started = save(self, step, *args, **kwargs)
    if step == 1:
      self.wait()
      raise _Killed
    return started

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", save_then_die)
  with pytest.raises(_Killed):
    rl.run_rl(config, str(tmp_path / "killed"))
  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", save)
  rl.run_rl(config, str(tmp_path / "killed"))

  def records(name):
    with open(tmp_path / name / "metrics.jsonl") as f:
      return [json.loads(line) for line in f]

  whole, resumed = records("whole"), records("killed")
  assert [r["step"] for r in resumed] == [1, 2]
  for a, b in zip(whole, resumed):
    for key in a:
      if not key.startswith("time/"):
        assert a[key] == b[key], (a["step"], key)
  assert os.path.isdir(tmp_path / "killed" / "checkpoints" / "2")
