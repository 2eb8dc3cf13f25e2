"""The model-backed RL path: rollout buffers scored teacher-forced agree with the sampler,
PPO through sampler -> buffer -> re-score -> update learns a checkable toy task, and a killed
RL run resumes exactly."""

import json
import os
import types

import jax
import numpy as np
import pytest

import ppo_golden
import tiny_rl
from jaxrl_gen import parallel
from jaxrl_gen import policy as policy_lib
from jaxrl_gen import sampling
from jaxrl_gen.envs import batch as envs_batch
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.train import learner, ppo, rl, rollout
from jaxrl_gen.train import state as state_lib
from jaxrl_gen.train import steps

# The tiny run's reruns (kill and resume, the flops budget) load the executables of its first
# run.
pytestmark = pytest.mark.usefixtures("compile_cache")


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


def _built(repo_root, **ppo_fields):
  """The RL steps of a one-device tiny-text run with these `config.ppo` fields."""
  config = tiny_rl.config(repo_root)
  with config.unlocked():
    config.ppo.value_hidden = (32,)
    config.model.dtype = "float32"
    config.ppo.update(ppo_fields)
  mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
  return steps.rl(config, mesh), mesh


def _scorer(built, mesh, chunk):
  return learner.RowScorer(built["rescore"], mesh, built.model_config.rules, chunk)


def _action_masks(generations, length):
  spans = [rollout.action_span.Span(np.zeros(len(g.tokens), np.float32),
                                    np.ones(len(g.tokens), np.float32)) for g in generations]
  return rollout.action_span.stack(spans, length)


def test_rescoring_equals_the_samplers_logprobs_and_values(repo_root):
  net = _net()
  rng = np.random.default_rng(0)
  prompts = [rng.integers(2, 500, size=n).tolist() for n in (5, 17, 9)]
  gens = _generations(net.model, prompts, jax.random.key(3), temperature=0.7, max_new_tokens=12)
  buffer = rollout.sequences(gens, pad_id=0, image_token_id=None)
  buffer = buffer.replace(**_action_masks(gens, buffer.output_ids.shape[1]))
  built, mesh = _built(repo_root, rollout_temperature=0.7, thought_coef=0.5)
  _, state = state_lib.create(net, built.tx, seed=0)
  scored = _scorer(built, mesh, chunk=1)(state, buffer)
  for i, g in enumerate(gens):
    n = len(g.tokens)
    np.testing.assert_allclose(scored["token_logp"][i, :n], g.logprobs, atol=1e-4)
    assert scored["old_logp"][i] == pytest.approx(float(g.logprobs.sum()), abs=1e-3)
  hidden = np.stack([g.prompt_hidden for g in gens])
  np.testing.assert_allclose(scored["old_value"], np.asarray(net.value(hidden)), atol=1e-5)
  # The bootstrap value: a prompt-only pass gives each prompt's value as the sampler's state.
  prompt_only = [policy_lib.Generation(g.prompt_ids, None, np.zeros(0, np.int32),
                                       np.zeros(0, np.float32), None, False, "") for g in gens]
  processor = types.SimpleNamespace(ids=types.SimpleNamespace(pad=0, image=None))
  rows = rollout.prompt_rows(prompt_only, processor, buffer)
  assert rows.input_ids.shape == buffer.input_ids.shape
  np.testing.assert_allclose(_scorer(built, mesh, chunk=2)(state, rows)["old_value"],
                             scored["old_value"], atol=1e-5)


def test_ppo_learns_to_say_an_even_token(repo_root):
  """A one-turn bandit on the real stack: the policy picks among its 8 likeliest first
  tokens (top-k 8; log-probs of the whole distribution, as always) and is rewarded for an
  even token id. From about half, PPO (clip 0.2) must make it nearly always even: at least 90%
  of the last two updates' samples (measured: 100%)."""
  net = _net()
  fields = dict(num_updates=7, ppo_epochs=2, minibatches=2, grad_accum=1, lr=3e-3,
                end_lr=3e-3, clip=0.2, num_steps=64, num_envs=64, rollout_temperature=1.0)
  cfg = ppo.PPOConfig.from_config(fields)
  built, mesh = _built(repo_root, **fields)
  graphdef, (_, state) = built.graphdef, state_lib.create(net, built.tx, seed=0)
  update = built["ppo_update"]
  prompts = [[5, 6, 7, 8]] * 64
  rates = []
  for step in range(cfg.num_updates):
    model = nnx_model(graphdef, state)
    gens = _generations(model, prompts, jax.random.key(100 + step), 1.0, max_new_tokens=1,
                        top_k=8)
    rewards = np.array([float(g.tokens[0] % 2 == 0) for g in gens], np.float32)
    rates.append(rewards.mean())
    buffer = rollout.sequences(gens, pad_id=0, image_token_id=None)
    buffer = buffer.replace(valid=np.ones(len(gens), bool),
                            **_action_masks(gens, buffer.output_ids.shape[1]))
    scored = _scorer(built, mesh, chunk=64)(state, buffer)
    advantages, returns = ppo.compute_advantages(
        rewards[None], scored["old_value"][None], np.ones((1, 64), bool),
        np.zeros((1, 64), bool), np.zeros(64, np.float32), cfg)
    buffer = buffer.replace(old_logp=scored["old_logp"], old_value=scored["old_value"],
                            advantages=np.asarray(advantages)[0], returns=np.asarray(returns)[0])
    state, metrics = update(state, buffer, jax.random.key(step))
    assert int(metrics["skipped"]) == 0
  print("even-token rate per update:", rates)
  assert rates[0] < 0.75 and np.mean(rates[-2:]) >= 0.9, rates


def nnx_model(graphdef, state):
  from flax import nnx  # noqa: PLC0415
  return nnx.merge(graphdef, state.params, state.frozen, state.rest).model


def test_killed_rl_run_resumes_exactly(repo_root, tmp_path, monkeypatch):
  # One pass over the buffer per update (of 2 shuffled minibatches of 2 accumulated parts, as
  # in the tiny run): the other 3 repeat the same code, and each PPO update costs ~5 s an epoch.
  config = tiny_rl.config(repo_root, ppo_epochs=1)
  whole, resumed = tiny_rl.whole_and_resumed(rl.run_rl, config, tmp_path, monkeypatch)
  assert [r["step"] for r in resumed] == [1, 2]
  tiny_rl.assert_same_records(whole, resumed)
  assert os.path.isdir(tmp_path / "killed" / "checkpoints" / "2")


def test_ppo_run_equals_its_golden_record(tmp_path):
  """The tiny PPO run with a KL term and greedy rollouts against its record,
  tests/data/ppo_tiny_golden.json: every metric of every update and every parameter's sum.
  Greedy rollouts make the record machine-independent (tests/ppo_golden.py, which writes it,
  says why and records where it came from); rtol 1e-4 covers another CPU's float order."""
  golden = json.loads(ppo_golden.GOLDEN.read_text())
  assert golden["origin"]["command"] == ppo_golden.COMMAND
  got = ppo_golden.run(str(tmp_path))
  assert len(got["records"]) == len(golden["records"])
  for record, want in zip(got["records"], golden["records"]):
    assert record.keys() == want.keys()
    for key, value in want.items():
      assert record[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (want["step"], key)
  np.testing.assert_allclose(got["param_sums"], golden["param_sums"], rtol=1e-4, atol=1e-4)


def test_rollout_success_counts_episodes_that_started_in_an_earlier_rollout():
  """An episode ending here counts wherever it started; counting only those that also
  started here would see the short (successful) ones alone."""
  def step(episode, attempt, reward, done, slot):
    gen = policy_lib.Generation(np.zeros(3, np.int32), None, np.zeros(2, np.int32),
                                np.zeros(2, np.float32), np.zeros(4, np.float32), True, "")
    return envs_batch.Transition(episode, attempt, slot, [], "", reward, reward == 5.0,
                                 done and reward != 5.0, None, {}, gen)
  steps = [[step(0, 3, -1.0, False, 0), step(1, 0, 5.0, True, 1)],   # slot 0: attempts 4, 5
           [step(0, 4, -1.0, True, 0), step(2, 0, -1.0, False, 1)]]  # end in failure (forced)
  flat = [t for turn in steps for t in turn]
  stats = rollout.episode_stats(rollout.stat_table(flat, 5.0))
  assert stats["rollout/episodes"] == 2 and stats["rollout/success"] == 0.5
  assert stats["rollout/episode_length"] == 3.0  # (5 + 1) / 2
  assert stats["rollout/first_attempt_success"] == 0.5
  assert stats["rollout/generations"] == 4 and stats["rollout/tokens"] == 4 * 5
  assert "rollout/success" not in rollout.episode_stats(rollout.stat_table(flat, None))


def test_buffer_rows_pad_to_the_shape_every_process_agreed():
  """Rows are padded to multiples of `multiple`, and at least to `min_shape` (the largest
  (P, L, image slots) any process needs); output positions see what the last prompt token
  saw in the cross-attention mask."""
  def gen(prompt, n_out, images):
    arrays = {"pixel_values": np.ones((1, images, 2, 3, 4, 4), np.float32),
              "aspect_ratio_ids": np.ones((1, images), np.int32),
              "aspect_ratio_mask": np.ones((1, images, 2), np.int32)}
    return policy_lib.Generation(np.asarray(prompt, np.int32), arrays,
                                 np.arange(3, 3 + n_out, dtype=np.int32),
                                 np.zeros(n_out, np.float32), np.zeros(4, np.float32), True, "")
  gens = [gen([9, 5, 6], 3, 1), gen([5, 9, 6, 7, 8], 70, 1)]
  assert rollout.buffer_shape(gens, multiple=4) == (8, 72, 1)
  rows = rollout.sequences(gens, pad_id=0, image_token_id=9, multiple=4, min_shape=(12, 8, 2))
  assert rows.input_ids.shape == (2, 12 + 72) and rows.pixel_values.shape[:2] == (2, 2)
  np.testing.assert_array_equal(rows.input_ids[0, 9:15], [9, 5, 6, 3, 4, 5])
  cross = rows.cross_attention_mask
  assert cross.shape == (2, 84, 2, 2) and not cross[:, :, 1].any()  # the agreed empty slot
  np.testing.assert_array_equal(cross[0, 12:], np.broadcast_to(cross[0, 11], (72, 2, 2)))
  assert cross[0, 11, 0].all() and not cross[0, 8, 0].any()  # from the image token on


def test_a_flops_budget_ends_the_run_at_the_update_that_reaches_it(repo_root, tmp_path):
  """ppo.flops_budget: the run stops after the update whose train/flops reach the budget,
  evaluated and checkpointed there; rerun, it trains nothing more; with a larger budget (a
  key a resumed run may change) it continues."""
  config = tiny_rl.config(repo_root, ppo_epochs=1)  # the budget counts whatever an update costs
  with config.unlocked():
    config.ppo.num_updates, config.ppo.eval_every = 4, 3
    config.checkpoint.every = 3
    config.eval.benchmarks, config.eval.episodes, config.eval.verify_iter = "id", 2, 1
    config.ppo.flops_budget = 1.0  # any update reaches it
  rl.run_rl(config, str(tmp_path))
  records = tiny_rl.records(tmp_path)
  assert [r["step"] for r in records] == [1]
  assert "eval/id/success" in records[0]  # the run's end is evaluated
  assert os.path.isdir(tmp_path / "checkpoints" / "1")
  rl.run_rl(config, str(tmp_path))
  assert tiny_rl.records(tmp_path) == records
  config.ppo.flops_budget = 1.5 * records[0]["train/flops"]
  rl.run_rl(config, str(tmp_path))
  assert [r["step"] for r in tiny_rl.records(tmp_path)] == [1, 2]
