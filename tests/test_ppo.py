"""PPO: GAE, normalisation, the sequence log-prob and every loss term against plain NumPy
references (loops, written from reference.md §4); the update on a toy NNX model."""

import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrl_gen import config_lib
from jaxrl_gen.train import ppo

RNG = np.random.default_rng(0)


# --- NumPy references ---------------------------------------------------------------------------


def np_gae(rewards, values, terminated, truncated, next_value, gamma, lam, bootstrap_truncated):
  """A_t = sum_k (gamma lam)^k delta_{t+k} up to the end of t's episode (one env, [T])."""
  steps = len(rewards)
  ends = terminated if bootstrap_truncated else terminated | truncated
  deltas = []
  for t in range(steps):
    following = next_value if t == steps - 1 else values[t + 1]
    deltas.append(rewards[t] + gamma * following * (0.0 if ends[t] else 1.0) - values[t])
  advantages = np.zeros(steps)
  for t in range(steps):
    weight = 1.0
    for k in range(t, steps):
      advantages[t] += weight * deltas[k]
      if ends[k]:
        break
      weight *= gamma * lam
  return advantages, advantages + values


def np_sequence_logp(token_logp, thought, action, constant, coef):
  out = []
  for row in range(len(token_logp)):
    if constant[row]:
      out.append(-2.0)
      continue
    total = 0.0
    for t in range(len(token_logp[row])):
      total += coef * token_logp[row][t] * thought[row][t] + token_logp[row][t] * action[row][t]
    out.append(total)
  return np.array(out)


def np_loss(new_logp, value, batch, cfg, token_logp=None, entropy=None):
  """The reference's per-sample PPO loss, averaged over the microbatch (skipped samples count)."""
  size = len(new_logp)
  ok = [batch["valid"][i] and np.isfinite(new_logp[i]) and np.isfinite(value[i])
        for i in range(size)]
  ratios = [np.exp(new_logp[i] - batch["old_logp"][i]) if ok[i] else 1.0 for i in range(size)]
  clipped_only = cfg.ratio_rule and any(r > 10 for r in ratios)
  policy = value_loss = bonus = kl = 0.0
  for i in range(size):
    if not ok[i]:
      continue
    adv, ret, old_v = batch["advantages"][i], batch["returns"][i], batch["old_value"][i]
    surr1 = ratios[i] * adv
    surr2 = min(max(ratios[i], 1 - cfg.clip), 1 + cfg.clip) * adv
    policy -= surr2 if clipped_only else min(surr1, surr2)
    v_clipped = old_v + min(max(value[i] - old_v, -cfg.value_clip), cfg.value_clip)
    value_loss += 0.5 * max((value[i] - ret) ** 2, (v_clipped - ret) ** 2)
    scored = [t for t in range(len(batch["thought_mask"][i]))
              if batch["thought_mask"][i][t] + batch["action_mask"][i][t] > 0]
    if entropy is not None:
      bonus += sum(entropy[i][t] for t in scored)
    if cfg.kl_coef:
      ks = []
      for t in scored:
        d = batch["ref_token_logp"][i][t] - token_logp[i][t]
        ks.append(np.exp(d) - d - 1)
      kl += sum(ks) / max(len(ks), 1)
  return (policy + cfg.value_coef * value_loss - cfg.entropy_coef * bonus + cfg.kl_coef * kl) / size


# --- GAE and normalisation ----------------------------------------------------------------------


def _episodes(steps, envs):
  rewards = RNG.choice([5.0, -1.0, -2.0, -3.0], size=(steps, envs))
  values = RNG.normal(size=(steps, envs))
  terminated = RNG.random((steps, envs)) < 0.2
  truncated = ~terminated & (RNG.random((steps, envs)) < 0.2)
  return rewards, values, terminated, truncated, RNG.normal(size=envs)


@pytest.mark.parametrize("bootstrap_truncated", [False, True])
def test_gae_matches_numpy(bootstrap_truncated):
  rewards, values, terminated, truncated, next_value = _episodes(17, 3)
  adv, ret = ppo.gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(terminated),
                     jnp.asarray(truncated), jnp.asarray(next_value), gamma=0.9, gae_lambda=0.95,
                     bootstrap_truncated=bootstrap_truncated)
  for env in range(3):
    expected = np_gae(rewards[:, env], values[:, env], terminated[:, env], truncated[:, env],
                      next_value[env], 0.9, 0.95, bootstrap_truncated)
    np.testing.assert_allclose(adv[:, env], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret[:, env], expected[1], rtol=1e-5, atol=1e-5)


def test_gae_boundary_modes_by_hand():
  # A GP episode truncated at step 1 (forced fail, -1), then a new episode's first step.
  rewards, values = jnp.array([-3.0, -1.0, 5.0]), jnp.array([0.5, 0.2, 1.0])
  terminated, truncated = jnp.array([False, False, True]), jnp.array([False, True, False])
  kwargs = dict(gamma=0.9, gae_lambda=0.95)
  adv, _ = ppo.gae(rewards, values, terminated, truncated, jnp.array(7.0), **kwargs)
  assert adv[1] == pytest.approx(-1.0 - 0.2)  # nothing from the next episode
  assert adv[2] == pytest.approx(5.0 - 1.0)  # terminated: next_value unused
  leaky, _ = ppo.gae(rewards, values, terminated, truncated, jnp.array(7.0),
                     bootstrap_truncated=True, **kwargs)
  assert leaky[1] == pytest.approx(-1.0 + 0.9 * 1.0 - 0.2 + 0.9 * 0.95 * 4.0)
  # A buffer that ends mid-episode bootstraps from next_value.
  adv, _ = ppo.gae(rewards[:1], values[:1], terminated[:1], truncated[:1], jnp.array(7.0), **kwargs)
  assert adv[0] == pytest.approx(-3.0 + 0.9 * 7.0 - 0.5)


def test_compute_advantages_and_explained_variance():
  rewards, values, terminated, truncated, next_value = _episodes(9, 2)
  cfg = ppo.PPOConfig(gamma=0.8, gae_lambda=0.5, bootstrap_truncated=True)
  adv, ret = ppo.compute_advantages(rewards, values, terminated, truncated, next_value, cfg)
  raw, expected_ret = np_gae(rewards[:, 1], values[:, 1], terminated[:, 1], truncated[:, 1],
                             next_value[1], 0.8, 0.5, True)
  np.testing.assert_allclose(ret[:, 1], expected_ret, rtol=1e-5, atol=1e-5)
  assert float(adv.mean()) == pytest.approx(0.0, abs=1e-5)
  returns = RNG.normal(size=20)
  guess = returns + RNG.normal(0, 0.5, 20)
  expected = 1 - np.var(returns - guess) / np.var(returns)
  assert float(ppo.explained_variance(guess, returns)) == pytest.approx(expected, rel=1e-4)
  assert float(ppo.explained_variance(returns, returns)) == pytest.approx(1.0)
  assert float(ppo.explained_variance(guess, np.ones(20))) == 0.0


def test_normalize():
  advantages = RNG.normal(3.0, 2.0, size=64)
  np.testing.assert_allclose(ppo.normalize(jnp.asarray(advantages)),
                             (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-5),
                             rtol=1e-4, atol=1e-5)
  valid = RNG.random(64) < 0.6
  picked = advantages[valid]
  out = np.asarray(ppo.normalize(jnp.asarray(advantages), jnp.asarray(valid)))
  np.testing.assert_allclose(out[valid], (picked - picked.mean()) / (picked.std(ddof=1) + 1e-5),
                             rtol=1e-4, atol=1e-5)
  assert not out[~valid].any()


# --- Sequence log-prob and losses ---------------------------------------------------------------


def _microbatch(size=6, length=5):
  thought = (RNG.random((size, length)) < 0.5).astype(np.float32)
  action = ((1 - thought) * (RNG.random((size, length)) < 0.7)).astype(np.float32)
  return {
      "thought_mask": thought, "action_mask": action,
      "constant_logp": np.array([False] * (size - 1) + [True]),
      "valid": np.array([True] * (size - 2) + [False, True]),
      "old_logp": RNG.normal(-3.0, 1.0, size).astype(np.float32),
      "old_value": RNG.normal(size=size).astype(np.float32),
      "returns": RNG.normal(size=size).astype(np.float32),
      "advantages": RNG.normal(size=size).astype(np.float32),
      "ref_token_logp": RNG.normal(-1.0, 0.3, (size, length)).astype(np.float32),
  }


def _given_scores(params, batch):
  return params["token_logp"], params["value"], params["entropy"]


def test_sequence_logprob_matches_numpy():
  batch = _microbatch()
  token_logp = RNG.normal(-1.0, 0.5, batch["thought_mask"].shape)
  token_logp[0, batch["thought_mask"][0] + batch["action_mask"][0] == 0] = np.nan  # padding
  seq, action = ppo.sequence_logprob(jnp.asarray(token_logp), batch["thought_mask"],
                                     batch["action_mask"], batch["constant_logp"], 0.5)
  expected = np_sequence_logp(np.nan_to_num(token_logp), batch["thought_mask"],
                              batch["action_mask"], batch["constant_logp"], 0.5)
  np.testing.assert_allclose(seq, expected, rtol=1e-5)
  assert action[-1] == -1.0 and seq[-1] == -2.0


@pytest.mark.parametrize("overrides", [
    {}, {"ratio_rule": False}, {"clip": 0.3, "value_clip": 0.05, "value_coef": 1.0},
    {"entropy_coef": 0.01, "kl_coef": 0.1}, {"big_ratio": True},
    {"big_ratio": True, "ratio_rule": False}])
def test_loss_matches_numpy(overrides):
  overrides = dict(overrides)
  big_ratio = overrides.pop("big_ratio", False)
  cfg = ppo.PPOConfig(**overrides)
  batch = _microbatch()
  scored = batch["thought_mask"] + batch["action_mask"] > 0
  token_logp = RNG.normal(-0.8, 0.4, scored.shape).astype(np.float32)
  new = np_sequence_logp(token_logp, batch["thought_mask"], batch["action_mask"],
                         batch["constant_logp"], cfg.thought_coef)
  batch["old_logp"] = (new + RNG.normal(0, 0.15, new.shape)).astype(np.float32)
  if big_ratio:
    batch["old_logp"][1] = new[1] - 3.0  # ratio e^3 > 10
  params = {"token_logp": jnp.asarray(token_logp),
            "value": jnp.asarray(RNG.normal(size=len(new)), jnp.float32),
            "entropy": jnp.asarray(RNG.random(scored.shape), jnp.float32)}
  loss, stats = ppo.microbatch_loss(params, batch, _given_scores, cfg)
  expected = np_loss(new, np.asarray(params["value"]), batch, cfg, token_logp,
                     np.asarray(params["entropy"]))
  assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-6)
  assert int(stats["samples"]) == 5 and int(stats["skipped"]) == 0
  assert int(stats["ratio_rule_used"]) == int(big_ratio and cfg.ratio_rule)


def test_nan_samples_are_skipped_without_poisoning_gradients():
  cfg = ppo.PPOConfig()
  batch = _microbatch()
  token_logp = RNG.normal(-0.8, 0.4, batch["thought_mask"].shape).astype(np.float32)
  row, col = 2, int(np.argmax(batch["thought_mask"][2] + batch["action_mask"][2]))
  values = RNG.normal(size=len(token_logp)).astype(np.float32)

  def scores(params, _):  # log of a negative number: NaN for one scored token of sample 2
    logp = params["token_logp"].at[row, col].set(jnp.log(params["poison"]))
    return logp, params["value"]

  params = {"token_logp": jnp.asarray(token_logp), "value": jnp.asarray(values),
            "poison": jnp.float32(-1.0)}
  (loss, stats), grads = jax.value_and_grad(ppo.microbatch_loss, has_aux=True)(
      params, batch, scores, cfg)
  token_logp[row, col] = np.nan
  new = np_sequence_logp(token_logp, batch["thought_mask"], batch["action_mask"],
                         batch["constant_logp"], cfg.thought_coef)
  assert float(loss) == pytest.approx(np_loss(new, values, batch, cfg), rel=1e-4)
  assert int(stats["skipped"]) == 1 and int(stats["samples"]) == 4
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert not np.asarray(grads["token_logp"][row]).any() and grads["value"][row] == 0


# --- The update on a toy model ------------------------------------------------------------------

FEATURES, HIDDEN, VOCAB, LENGTH, SIZE = 6, 8, 7, 5, 8


class Toy(nnx.Module):
  """A 'backbone' over fixed per-position features, an LM head and the value head (paths
  'value.*', as `learner.ActorCritic`)."""

  def __init__(self, rngs):
    self.backbone = nnx.Linear(FEATURES, HIDDEN, rngs=rngs)
    self.lm_head = nnx.Linear(HIDDEN, VOCAB, rngs=rngs)
    self.value = ppo.ValueHead(HIDDEN, (8, 4), rngs=rngs)

  def __call__(self, features, tokens):
    hidden = jnp.tanh(self.backbone(features))
    logp = jax.nn.log_softmax(self.lm_head(hidden[:, 1:]))
    token_logp = jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0]
    return token_logp, self.value(hidden[:, 0])  # position 0: the last prompt token


@pytest.fixture(scope="module")
def toy():
  graphdef, params = nnx.split(Toy(nnx.Rngs(0)), nnx.Param)

  def score(p, batch):
    return nnx.merge(graphdef, p)(batch["features"], batch["tokens"])

  cfg = ppo.PPOConfig(thought_coef=0.5)
  rng = np.random.default_rng(1)
  batch = {"features": rng.normal(size=(SIZE, LENGTH + 1, FEATURES)).astype(np.float32),
           "tokens": rng.integers(0, VOCAB, (SIZE, LENGTH)),
           "thought_mask": np.tile([1, 1, 1, 0, 0], (SIZE, 1)).astype(np.float32),
           "action_mask": np.tile([0, 0, 0, 1, 1], (SIZE, 1)).astype(np.float32),
           "constant_logp": np.zeros(SIZE, bool), "valid": np.ones(SIZE, bool),
           "advantages": np.asarray(ppo.normalize(jnp.asarray(rng.normal(size=SIZE)))),
           "returns": rng.normal(size=SIZE).astype(np.float32)}
  token_logp, value = score(params, batch)
  batch["old_logp"] = np.asarray(ppo.sequence_logprob(
      token_logp, batch["thought_mask"], batch["action_mask"], batch["constant_logp"], 0.5)[0])
  batch["old_value"] = np.asarray(value)
  return params, score, cfg, batch


@functools.lru_cache(maxsize=None)
def _compiled_update(score, params_treedef, overrides):
  cfg = ppo.PPOConfig(**{"num_updates": 1, "ppo_epochs": 2, "minibatches": 2, "grad_accum": 2,
                         "lr": 1e-2, **dict(overrides)})
  like_params = jax.tree.unflatten(params_treedef, [0] * params_treedef.num_leaves)
  tx = ppo.make_optimizer(cfg, like_params)
  return tx, jax.jit(functools.partial(ppo.ppo_update, score_fn=score, tx=tx, cfg=cfg))


def _update(toy, batch=None, **overrides):
  params, score, _, base = toy
  tx, update = _compiled_update(score, jax.tree.structure(params),
                                tuple(sorted(overrides.items())))
  return update(params, tx.init(params), batch or base, jax.random.key(0))


def _seq_logp(toy, params):
  _, score, cfg, batch = toy
  token_logp, _ = score(params, batch)
  return np.asarray(ppo.sequence_logprob(token_logp, batch["thought_mask"], batch["action_mask"],
                                         batch["constant_logp"], cfg.thought_coef)[0])


def _changed(before, after, part):
  return any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before[part]),
                                                        jax.tree.leaves(after[part])))


def test_update_raises_advantage_weighted_logprob(toy):
  params, _, _, batch = toy
  new_params, opt_state, metrics = _update(toy)
  gain = np.sum(batch["advantages"] * (_seq_logp(toy, new_params) - batch["old_logp"]))
  assert gain > 0
  assert int(metrics["samples"]) == 2 * SIZE and int(metrics["skipped"]) == 0
  assert all(np.isfinite(float(v)) for v in metrics.values())
  residual = batch["returns"] - batch["old_value"]
  assert float(metrics["explained_variance"]) == pytest.approx(
      1 - residual.var() / batch["returns"].var(), rel=1e-4)
  counts = [x for x in jax.tree.leaves(opt_state) if getattr(x, "dtype", None) == jnp.int32]
  assert counts and all(int(c) == 4 for c in counts)  # epochs x minibatches optimizer steps
  for part in ("backbone", "lm_head", "value"):
    assert _changed(params, new_params, part), part


def test_clipped_samples_give_no_policy_gradient(toy):
  params, _, _, batch = toy
  # Every ratio already 1.5 > 1 + clip: positive advantages are clipped, so no gradient at all
  # (value loss off); with negative advantages the pessimistic unclipped term still pulls.
  for sign, moves in ((1.0, False), (-1.0, True)):
    shifted = dict(batch, old_logp=batch["old_logp"] - np.log(1.5),
                   advantages=sign * np.abs(batch["advantages"]))
    new_params, _, metrics = _update(toy, shifted, value_coef=0.0)
    assert _changed(params, new_params, "lm_head") == moves
    assert float(metrics["clip_fraction"]) == 1.0 or moves


def test_frozen_parameters_do_not_move(toy):
  params, _, _, _ = toy
  labels = jax.tree_util.tree_flatten_with_path(ppo.freeze_labels(params, ("^backbone\\.",)))[0]
  names = {ppo.path_name(path): label for path, label in labels}
  assert names["backbone.kernel"] == "frozen" and names["value.layers.0.kernel"] == "trainable"
  new_params, _, _ = _update(toy, freeze=("^backbone\\.",), max_grad_norm=1.0)
  assert not _changed(params, new_params, "backbone")
  assert _changed(params, new_params, "lm_head") and _changed(params, new_params, "value")


def test_value_lr_moves_the_value_head_on_its_own_schedule(toy):
  params, _, _, _ = toy
  labels = jax.tree_util.tree_flatten_with_path(ppo.value_labels(params))[0]
  assert {ppo.path_name(p): v for p, v in labels}["value.out.bias"] == "value"
  assert {v for p, v in labels if not ppo.path_name(p).startswith("value.")} == {"policy"}

  def moved(new, part):
    return max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params[part]),
                                                           jax.tree.leaves(new[part])))
  # Adam moves each parameter by at most about lr per step (4 steps here, lr 1e-2): a value
  # lr 100x smaller keeps the head within 4e-4 while the policy moves as before.
  shared, _, _ = _update(toy)
  slow_critic, _, _ = _update(toy, value_lr=1e-4)
  assert moved(shared, "value") > 1e-2 and moved(slow_critic, "value") < 4.1e-4
  for part in ("backbone", "lm_head"):
    assert moved(slow_critic, part) == pytest.approx(moved(shared, part), rel=0.2)
  with pytest.raises(ValueError, match=r"ppo.value_lr=0"):
    ppo.PPOConfig(value_lr=0)


def test_gradients_reach_backbone_and_value_head(toy):
  params, score, cfg, batch = toy
  grad_fn = jax.jit(jax.grad(ppo.microbatch_loss, has_aux=True), static_argnums=(2, 3))
  grads, _ = grad_fn(params, batch, score, cfg)
  for part in ("backbone", "lm_head", "value"):
    assert float(optax.tree.norm(grads[part])) > 0, part
  value_only, _ = grad_fn(params, dict(batch, advantages=np.zeros(SIZE, np.float32)), score, cfg)
  assert float(optax.tree.norm(value_only["lm_head"])) == 0
  assert float(optax.tree.norm(value_only["value"])) > 0


def test_buffer_must_split_into_microbatches(toy):
  _, _, _, batch = toy
  with pytest.raises(ValueError, match="does not split"):
    _update(toy, {k: v[:6] for k, v in batch.items()})


def test_schedule_and_config():
  cfg = ppo.PPOConfig(lr=1e-6, end_lr=1e-9, num_updates=20)
  assert cfg.optimizer_steps == 160  # 20 updates x 4 epochs x 2 minibatches
  schedule = ppo.learning_rate(cfg)
  assert float(schedule(0)) == pytest.approx(1e-6)
  assert float(schedule(80)) == pytest.approx((1e-6 + 1e-9) / 2, rel=1e-4)
  assert float(schedule(160)) == pytest.approx(1e-9, rel=1e-3)
  with pytest.raises(ValueError, match=r"ppo\.grad_accum=0"):
    ppo.PPOConfig(grad_accum=0)
  with pytest.raises(ValueError, match=r"ppo.freeze: '\(' is not a regular expression"):
    ppo.PPOConfig(freeze=("(",))
  with pytest.raises(ValueError, match="end_lr"):
    ppo.PPOConfig(lr=1e-9, end_lr=1e-6)
  head = ppo.ValueHead(16, (1024, 512), rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
  out = head(jnp.ones((3, 16)))
  assert out.shape == (3,) and out.dtype == jnp.bfloat16
  assert [layer.kernel.shape for layer in head.layers] == [(16, 1024), (1024, 512)]


@pytest.mark.parametrize("name, updates", [("gp", 20), ("virl", 15)])
def test_config_sections(repo_root, name, updates):
  spec = importlib.util.spec_from_file_location(f"{name}_cfg", repo_root / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("l,llama-3.2-1b")  # a real preset: the reference's values
  for key in config.eval:
    assert f"eval.{key}" in module.__doc__, f"configs/{name}.py: eval.{key}"
  for key in config.ppo:
    assert f"ppo.{key}" in config_lib.ppo_config.__doc__, f"ppo.{key}"
  # The reference's values, but micro-batches of one row a chip on a pod (the pod recipe).
  assert ppo.PPOConfig.from_config(config.ppo) == ppo.PPOConfig(
      num_updates=updates, grad_accum=config_lib.POD_PPO_GRAD_ACCUM)
  assert module.get_config("vl,llama-3.2-1b").ppo.lr == (1e-7 if name == "virl" else 1e-6)
  toy = module.get_config("l,rl,tiny").ppo
  assert (toy.lr, toy.end_lr, toy.num_steps, toy.num_envs, toy.grad_accum) == (
      2e-5, 2e-5, 64, 64, 2)
  assert toy.rollout_temperature == 1.0
  assert (config.ppo.num_steps, config.sampling.temperature, config.sampling.max_new_tokens) == (256, 0.2, 512)
  config.ppo.max_grad_norm = 0.5
  assert ppo.PPOConfig.from_config(config.ppo).max_grad_norm == 0.5
  config.ppo.action_span = "tokens"
  with pytest.raises(config_lib.ConfigError, match=r"config.ppo.action_span='tokens'"):
    config_lib.validate(config)
  config.ppo.action_span, config.ppo.rollout_temperature = "field", 0.0
  with pytest.raises(config_lib.ConfigError, match=r"config.ppo.rollout_temperature=0.0"):
    config_lib.validate(config)
  config.ppo.length_multiple = 0
  with pytest.raises(config_lib.ConfigError, match=r"config.ppo.length_multiple=0"):
    config_lib.validate(config)
