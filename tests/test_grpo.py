"""The GRPO family through the real stack: group advantages and the token-level clipped loss
learn a checkable one-turn task, a killed GRPO run resumes exactly, the self-judged branch
runs without reading the verifier's reward, and configs that would leak it are refused."""


import jax
import numpy as np
import pytest
from flax import nnx

import tiny_rl
from jaxrl_gen import config_lib, parallel
from jaxrl_gen import policy as policy_lib
from jaxrl_gen import sampling
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.train import advantages, learner, rl, rollout
from jaxrl_gen.train import state as state_lib
from jaxrl_gen.train import steps

# The killed run and its resume load the executables the whole run compiled.
pytestmark = pytest.mark.usefixtures("compile_cache")


def test_grpo_learns_to_say_an_even_token(repo_root):
  """The PPO test's bandit: 8 groups of 8 samples of one prompt, top-k 8, reward 1 for an even
  first token; group-normalised advantages and the clipped token loss (no critic) must make
  the policy nearly always even: at least 90% of the last two updates' samples (measured:
  97%)."""
  config = tiny_rl.grpo_config(repo_root)
  with config.unlocked():
    config.grpo.groups, config.grpo.group_size = 8, 8
    config.ppo.update(num_updates=7, ppo_epochs=2, minibatches=2, grad_accum=1, lr=3e-3,
                      end_lr=3e-3, kl_coef=0.0, rollout_temperature=1.0)
    config.model.dtype = "float32"
  mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
  built = steps.rl(config, mesh)
  net = learner.Policy(mllama.create(presets.get("tiny-text"), seed=0))
  _, state = state_lib.create(net, built.tx, seed=0)
  scorer = learner.RowScorer(built["rescore"], mesh, built.model_config.rules, 64)
  rates = []
  for step in range(7):
    model = nnx.merge(built.graphdef, state.params, state.frozen, state.rest).model
    result = sampling.generate(model, [[5, 6, 7, 8]] * 64, key=jax.random.key(100 + step),
                               max_new_tokens=1, temperature=1.0, eos_ids=(1,), top_k=8)
    gens = [policy_lib.Generation(np.array([5, 6, 7, 8], np.int32), None, result.tokens[i, :1],
                                  result.logprobs[i, :1], None, True, "") for i in range(64)]
    reward = np.array([float(g.tokens[0] % 2 == 0) for g in gens], np.float32)
    rates.append(reward.mean())
    batch = rollout.sequences(gens, pad_id=0, image_token_id=None)
    batch = batch.replace(thought_mask=np.zeros((64, 1), np.float32),
                          action_mask=np.ones((64, 1), np.float32),
                          constant_logp=np.zeros(64, bool), valid=np.ones(64, bool))
    batch = batch.replace(old_token_logp=scorer(state, batch)["token_logp"],
                          advantages=advantages.compute("grpo", reward.reshape(8, 8)).reshape(-1))
    state, metrics = built["ppo_update"](state, batch, jax.random.key(step))
    assert int(metrics["skipped"]) == 0 and "explained_variance" not in metrics
  print("even-token rate per update:", rates)
  assert rates[0] < 0.75 and np.mean(rates[-2:]) >= 0.9, rates


def test_killed_grpo_run_resumes_exactly(repo_root, tmp_path, monkeypatch):
  whole, resumed = tiny_rl.whole_and_resumed(rl.run_rl, tiny_rl.grpo_config(repo_root), tmp_path,
                                             monkeypatch)
  assert [r["step"] for r in resumed] == [1, 2]
  tiny_rl.assert_same_records(whole, resumed)
  assert whole[0]["rollout/generations"] == 8  # 2 groups x 4 single-attempt episodes
  assert "ppo/kl" in whole[0] and "ppo/value_loss" not in whole[0]


def test_self_judged_grpo_trains_without_the_verifier_reward(repo_root, tmp_path, monkeypatch):
  """The self-judged branch: rewards from the group's consistency and the frozen judge. The
  env's rewards are replaced by NaN: the update must not read them (success is still logged)."""
  config = tiny_rl.grpo_config(repo_root, reward="self_judge")
  calls = []
  original = rl.Trainer.episode_rewards

  def spy(self, transitions, batch, judge, key):
    calls.append(len(transitions))
    poisoned = [t.__class__(**{**t.__dict__, "reward": float("nan")}) for t in transitions]
    out = original(self, poisoned, batch, judge, key)
    assert np.isfinite(out[0]).all()
    return out

  monkeypatch.setattr(rl.Trainer, "episode_rewards", spy)
  rl.run_rl(config, str(tmp_path))
  records = tiny_rl.records(tmp_path)
  assert calls == [8, 8]
  for r in records:
    assert 0.0 <= r["grpo/judge_score"] <= 1.0 and 0.0 <= r["grpo/reward"] <= 1.0
    assert np.isfinite(r["ppo/policy_loss"]) and "rollout/success" in r
  # The judge's tokens count as forward compute.
  assert records[0]["train/tokens_buffer"] > 8 * (6 + 1) * 3


def test_unsupervised_rewards_refuse_episodes_with_verifier_feedback(repo_root):
  config = tiny_rl.grpo_config(repo_root, reward="majority")
  with config.unlocked():
    config.env.verification = True
  with pytest.raises(config_lib.ConfigError, match="verification=False"):
    config_lib.validate(config, num_devices=1)
  with config.unlocked():
    config.env.verification, config.grpo.group_size = False, 1
  with pytest.raises(config_lib.ConfigError, match="group_size"):
    config_lib.validate(config, num_devices=1)
