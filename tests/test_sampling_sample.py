"""Token choice: top-k / top-p never emit excluded tokens and sample the renormalised
distribution (fixed keys); T -> 0 is greedy; per-row keys make a row's sample independent
of its batch; a smaller budget gives a prefix of a larger one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_gen import sampling
from jaxrl_gen.models import presets
from jaxrl_gen.models.mllama import Model
from jaxrl_gen.sampling import sample

DRAWS = 40_000
LOGITS = np.array([2.0, -1.0, 0.5, 1.4, -3.0, 0.9, 0.0, 1.1, -0.4, 2.3], np.float32)


def _draw(temperature, top_k, top_p):
  keys = jax.random.split(jax.random.key(7), DRAWS)
  logits = jnp.broadcast_to(jnp.asarray(LOGITS), (DRAWS, LOGITS.size))
  tokens, logp = jax.jit(lambda l, k: sample.choose(l, k, temperature=temperature, top_k=top_k,
                                                    top_p=top_p))(logits, keys)
  return np.asarray(tokens), np.asarray(logp)


def _allowed(temperature, top_k, top_p):
  """The kept set and its renormalised probabilities, computed the slow obvious way."""
  probs = np.exp(LOGITS / temperature) / np.exp(LOGITS / temperature).sum()
  order = np.argsort(-probs)
  if top_k:
    order = order[:top_k]
  p = probs[order] / probs[order].sum()
  kept = [tok for j, tok in enumerate(order) if p[:j].sum() < top_p]
  want = np.zeros_like(probs)
  want[kept] = probs[kept] / probs[kept].sum()
  return set(kept), want


@pytest.mark.parametrize("temperature, top_k, top_p", [
    (1.0, 3, 1.0), (0.7, 0, 0.75), (1.3, 6, 0.8), (1.0, 0, 1.0), (0.5, 1, 1.0)])
def test_truncated_sampling_keeps_only_allowed_tokens_with_right_frequencies(
    temperature, top_k, top_p):
  tokens, logp = _draw(temperature, top_k, top_p)
  kept, want = _allowed(temperature, top_k, top_p)
  assert set(np.unique(tokens)) <= kept
  freq = np.bincount(tokens, minlength=LOGITS.size) / DRAWS
  sigma = np.sqrt(want * (1 - want) / DRAWS)
  assert (np.abs(freq - want) <= 5 * sigma + 1e-9).all(), (freq, want)
  # the reported log-prob is of the tempered distribution before truncation
  full = np.asarray(jax.nn.log_softmax(LOGITS / temperature))
  np.testing.assert_allclose(logp, full[tokens], rtol=1e-6)


def test_top_k_keeps_ties_at_the_boundary():
  keep = sample.keep_mask(jnp.asarray([[1.0, 3.0, 2.0, 2.0, 0.0]]), top_k=2, top_p=1.0)
  np.testing.assert_array_equal(np.asarray(keep), [[False, True, True, True, False]])


def test_near_zero_temperature_is_greedy():
  logits = jax.random.normal(jax.random.key(1), (64, 50)) * 3
  keys = jax.random.split(jax.random.key(2), 64)
  tokens, _ = sample.choose(logits, keys, temperature=1e-6)
  greedy, logp = sample.choose(logits, keys, temperature=0.0)
  np.testing.assert_array_equal(np.asarray(tokens), np.asarray(greedy))
  np.testing.assert_allclose(np.asarray(logp),
                             np.asarray(jax.nn.log_softmax(logits).max(-1)), rtol=1e-6)


@pytest.fixture(scope="module")
def model():
  return Model(presets.get("tiny-text"), rngs=nnx.Rngs(3))


PROMPTS = [[5, 17, 300, 9], [44] * 11, [1000, 3, 3], [7, 8]]


def _run(model, prompts, new=10, **kw):
  args = dict(key=jax.random.key(11), max_new_tokens=new, temperature=1.0, eos_ids=(),
              prompt_buckets=(16,), batch_buckets=(1, 2, 4))
  args.update(kw)
  return sampling.generate(model, prompts, **args)


def test_generate_at_near_zero_temperature_or_top_k_1_equals_greedy(model):
  greedy = _run(model, PROMPTS, temperature=0.0).tokens
  np.testing.assert_array_equal(_run(model, PROMPTS, temperature=1e-5).tokens, greedy)
  np.testing.assert_array_equal(_run(model, PROMPTS, top_k=1).tokens, greedy)
  assert not (_run(model, PROMPTS).tokens == greedy).all()  # T = 1 does sample


def test_a_rows_sample_does_not_depend_on_its_batch(model):
  together = _run(model, PROMPTS)
  alone = _run(model, PROMPTS[2:3])  # another batch bucket (1 vs 4), row index 0 vs 2
  assert not (together.tokens[0] == together.tokens[2]).all()
  shifted = _run(model, [PROMPTS[0], PROMPTS[1], PROMPTS[2]])  # bucket 4 with a padding row
  np.testing.assert_array_equal(shifted.tokens, together.tokens[:3])
  # Row keys follow the row index: the same prompt at index 0 draws row 0's stream.
  np.testing.assert_array_equal(alone.tokens[0], _run(model, [PROMPTS[2], PROMPTS[0]]).tokens[0])


def test_smaller_budget_is_a_prefix_and_eos_pads(model):
  long = _run(model, PROMPTS, new=12)
  short = _run(model, PROMPTS, new=5)  # same token bucket (16), budget 5
  assert short.tokens.shape == (4, 5) and (short.lengths == 5).all() and not short.finished.any()
  np.testing.assert_array_equal(short.tokens, long.tokens[:, :5])
  np.testing.assert_allclose(short.logprobs, long.logprobs[:, :5], atol=1e-6)
  eos = int(long.tokens[1, 2])
  stopped = _run(model, PROMPTS, new=12, eos_ids=(eos, 2047), pad_id=0)
  for row, full in zip(stopped.token_lists(), long.tokens):
    cut = next((t + 1 for t, tok in enumerate(full) if tok in (eos, 2047)), len(full))
    assert row == full[:cut].tolist()
  assert stopped.finished[1] and stopped.lengths[1] <= 3
  n = stopped.lengths[1]
  assert (stopped.tokens[1, n:] == 0).all() and (stopped.logprobs[1, n:] == 0).all()


def test_scanned_and_unrolled_decode_agree(model):
  unrolled = _run(model, PROMPTS, decode_layers="unrolled", return_logits=True)
  scanned = _run(model, PROMPTS, decode_layers="scan", return_logits=True)
  np.testing.assert_array_equal(unrolled.tokens, scanned.tokens)
  np.testing.assert_allclose(unrolled.logits, scanned.logits, atol=1e-5)
  with pytest.raises(ValueError, match="decode_layers='fast': must be one of"):
    _run(model, PROMPTS, decode_layers="fast")
