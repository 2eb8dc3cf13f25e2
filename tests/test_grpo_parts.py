"""The GRPO family's pure parts against NumPy references: the group advantage estimators,
the token-level clipped loss with its k3 KL and aggregations, the self-judged reward's
modulation, consistency prior and parsing (hostile model output included)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_gen.train import advantages, ppo, rewards, token_loss
from jaxrl_gen.train.batch import RolloutBatch

RNG = np.random.default_rng(7)


# --- Advantages --------------------------------------------------------------------------------


def test_group_estimators_match_numpy():
  r = RNG.normal(size=(5, 6))
  r[2] = 1.5  # a flat group
  mean = r.mean(1, keepdims=True)
  std = r.std(1, ddof=1, keepdims=True)
  expected_grpo = np.where(std > 0, (r - mean) / (std + advantages.EPS), 0.0)
  np.testing.assert_allclose(advantages.compute("grpo", r), expected_grpo, rtol=1e-5, atol=1e-6)
  assert not advantages.compute("grpo", r)[2].any()
  np.testing.assert_allclose(advantages.compute("drgrpo", r), r - mean, rtol=1e-5, atol=1e-6)
  loo = np.array([[r[g, i] - np.delete(r[g], i).mean() for i in range(6)] for g in range(5)])
  np.testing.assert_allclose(advantages.compute("rloo", r), loo, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(advantages.compute("raw", r), r, rtol=1e-6)
  assert not advantages.compute("rloo", r[:, :1]).any()  # one sample: no baseline, no signal
  with pytest.raises(ValueError, match="unknown advantage estimator"):
    advantages.compute("ppo", r)


def test_gae_by_name_is_ppos():
  rewards_ = RNG.normal(size=(4, 3)).astype(np.float32)
  values = RNG.normal(size=(4, 3)).astype(np.float32)
  done = RNG.random((4, 3)) < 0.3
  nxt = RNG.normal(size=3).astype(np.float32)
  got = advantages.compute("gae", rewards_, values=values, terminated=done,
                           truncated=np.zeros_like(done), next_value=nxt)
  want, _ = ppo.compute_advantages(rewards_, values, done, np.zeros_like(done), nxt,
                                   ppo.PPOConfig())
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-6)


# --- The token-level loss ----------------------------------------------------------------------


def _batch(size=6, length=5):
  action = (RNG.random((size, length)) < 0.8).astype(np.float32)
  return RolloutBatch(
      thought_mask=np.zeros((size, length), np.float32), action_mask=action,
      constant_logp=np.zeros(size, bool), valid=np.array([True] * (size - 1) + [False]),
      old_token_logp=RNG.normal(-1.0, 0.3, (size, length)).astype(np.float32),
      ref_token_logp=RNG.normal(-1.0, 0.3, (size, length)).astype(np.float32),
      advantages=RNG.normal(size=size).astype(np.float32))


def np_token_loss(logp, b, clip, high, kl_coef, agg):
  """Per token: -min(r A, clip(r, 1 - clip, 1 + high) A) + kl_coef k3, averaged as `agg`."""
  terms, weights = np.zeros_like(logp), np.zeros_like(logp)
  rows = [i for i in range(len(logp)) if b.valid[i]]
  total = sum(b.action_mask[i].sum() for i in rows)
  for i in rows:
    n = b.action_mask[i].sum()
    for t in range(logp.shape[1]):
      if not b.action_mask[i, t]:
        continue
      ratio = np.exp(logp[i, t] - b.old_token_logp[i, t])
      a = b.advantages[i]
      d = b.ref_token_logp[i, t] - logp[i, t]
      terms[i, t] = (-min(ratio * a, min(max(ratio, 1 - clip), 1 + high) * a)
                     + kl_coef * (np.exp(d) - d - 1))
      weights[i, t] = {"token_mean": 1 / total, "seq_mean_token_mean": 1 / n / len(rows),
                       "seq_mean_token_sum_norm": 1 / logp.shape[1] / len(rows)}[agg]
  return float((terms * weights).sum())


@pytest.mark.parametrize("agg", ppo.LOSS_AGGREGATIONS)
@pytest.mark.parametrize("high", [None, 0.28])
def test_token_loss_matches_numpy(agg, high):
  b = _batch()
  cfg = ppo.PPOConfig(advantage="grpo", loss="grpo_clip", clip=0.2, clip_high=high,
                      kl_coef=0.04, loss_agg=agg)
  logp = (b.old_token_logp + RNG.normal(0, 0.3, b.old_token_logp.shape)).astype(np.float32)
  loss, stats = token_loss.clipped_token_loss(
      {"logp": jnp.asarray(logp)}, b, lambda p, _: (p["logp"], None), cfg)
  want = np_token_loss(logp, b, 0.2, 0.2 if high is None else high, 0.04, agg)
  assert float(loss) == pytest.approx(want, rel=1e-4, abs=1e-6)
  assert int(stats["samples"]) == 5 and "value_loss" not in stats


def test_k3_kl_is_zero_at_the_reference_and_positive_elsewhere():
  b = _batch()
  cfg = ppo.PPOConfig(advantage="grpo", loss="grpo_clip", kl_coef=1.0)
  same = b.replace(advantages=np.zeros(6, np.float32))
  at_ref = same.ref_token_logp

  def loss(logp):
    return token_loss.clipped_token_loss({"logp": logp}, same,
                                         lambda p, _: (p["logp"], None), cfg)[0]
  assert float(loss(jnp.asarray(at_ref))) == pytest.approx(0.0, abs=1e-7)
  grad = jax.grad(loss)(jnp.asarray(at_ref))
  np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-7)  # a minimum at pi = ref
  assert float(loss(jnp.asarray(at_ref + 0.3))) > 0


def test_kl_in_reward_leaves_the_loss_free_of_it():
  b = _batch().replace(advantages=np.zeros(6, np.float32))
  cfg = ppo.PPOConfig(advantage="grpo", loss="grpo_clip", kl_coef=1.0, kl_in_reward=True)
  loss, stats = token_loss.clipped_token_loss(
      {"logp": jnp.asarray(b.old_token_logp + 0.5)}, b, lambda p, _: (p["logp"], None), cfg)
  assert float(loss) == 0.0 and "kl" not in stats


def test_loss_and_estimator_must_agree():
  with pytest.raises(ValueError, match="group estimators"):
    ppo.PPOConfig(advantage="grpo", loss="turn_ppo")
  with pytest.raises(ValueError, match="gae"):
    ppo.PPOConfig(advantage="gae", loss="grpo_clip")


# --- The self-judged reward --------------------------------------------------------------------


def test_judge_modulation_at_the_published_points():
  g = rewards.judge_modulation
  assert g(0.0) == pytest.approx(0.80, abs=5e-3)
  assert g(0.5) == pytest.approx(0.98, abs=5e-3)
  assert g(0.95) == pytest.approx(1.10, abs=5e-3)
  assert g(1.0) == pytest.approx(1.185, abs=5e-3)
  assert g(0.7) == pytest.approx(1.0, abs=5e-3)
  s = np.array([0.0, 0.4, 0.9])
  np.testing.assert_allclose(g(s), [g(0.0), g(0.4), g(0.9)])
  assert isinstance(g(0.3), float) and isinstance(g(s), np.ndarray)


def test_self_consistency_both_branches():
  hard = rewards.self_consistency(["24"] * 7 + ["12"])  # 7/8 = 0.875 > 0.85: majority vote
  np.testing.assert_array_equal(hard, [1.0] * 7 + [0.0])
  soft = rewards.self_consistency(["1", "1", "2", None, "3", "2", "2", "1"])
  np.testing.assert_allclose(soft, [3 / 8, 3 / 8, 3 / 8, 0.0, 1 / 8, 3 / 8, 3 / 8, 3 / 8])
  at_threshold = rewards.self_consistency(["a"] * 6 + ["b"])  # 6/7 = 0.857 > 0.85
  np.testing.assert_array_equal(at_threshold, [1.0] * 6 + [0.0])
  below = rewards.self_consistency(["a"] * 5 + ["b"])  # 5/6 = 0.833: frequencies
  np.testing.assert_allclose(below, [5 / 6] * 5 + [1 / 6])


def test_self_judged_reward_and_group_log_softmax():
  answers = ["24", "24", None, "12"]
  scores = np.array([1.0, 0.5, 1.0, 0.0])
  c = np.array([0.5, 0.5, 0.0, 0.25])
  want = np.clip(c * rewards.judge_modulation(scores) + np.array([0, 0, -0.5, 0]), 0, 1)
  np.testing.assert_allclose(rewards.self_judged(answers, scores), want)
  a = rewards.group_log_softmax(want[None], beta=2.0)
  np.testing.assert_allclose(np.exp(a).sum(), 1.0)
  # Centred within the group, the log-softmax is beta (R - mean R).
  np.testing.assert_allclose(advantages.compute("drgrpo", a), 2.0 * (want - want.mean())[None],
                             atol=1e-6)


def test_majority_reward():
  np.testing.assert_array_equal(rewards.majority(["1", "1", "2", None]), [1, 1, 0, 0])
  assert not rewards.majority(["1", "2", "3", "4"]).any()  # all different
  assert not rewards.majority(["1", "1", "2", "2"]).any()  # a tie
  np.testing.assert_array_equal(rewards.majority_reward(["1", "1", None, "2"]), [1, 1, 0, 0])


@pytest.mark.parametrize("text, want", [
    ('{"cards": ["2", "J"], "formula": "(2+10)*2=24"}', "24"),
    ('{"formula": "10/4"}', "5/2"),       # exact, never a float
    ('{"formula": "1/(2-2)"}', None),     # division by zero
    ('{"formula": "__import__(\'os\')"}', None),
    ('{"formula": "9' + "9" * 5000 + '*9"}', None),  # a number no card has
    ('{"formula": "((((2+2"}', None),
    ("no json at all", None),
    ("\x00\ud800" * 1000, None),
])
def test_gp_answer_key_reads_the_claimed_value_safely(text, want):
  assert rewards.answer_key("gp", text) == want


def test_virl_answer_key_is_the_action():
  answer = '{"current observation": "x", "action": "turn_direction( north)"}'
  assert rewards.answer_key("virl", answer) == "turn_direction( north)"
  assert rewards.answer_key("virl", "garbage") is None


@pytest.mark.parametrize("text, want", [
    (r"... \boxed{0.8}", 0.8), (r"\boxed{0.2} then \boxed{0.9}", 0.9), (r"\boxed{7}", 1.0),
    (r"\boxed{-3}", 0.0), (r"\boxed{x} \boxed{", 0.0), ('"overall_score": 0.35', 0.35),
    (r"\boxed{high}" + ' "overall_score": "0.6"', 0.6), ("", 0.0), ("{" * 10000, 0.0)])
def test_judge_score_parsing(text, want):
  assert rewards.judge_score(text) == pytest.approx(want)
