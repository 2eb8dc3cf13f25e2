"""KV cache: a prefill then one-token cached steps reproduce the full forward (fp32, 1e-4),
decoded as the sampler will run it: a pure function over `nnx.split` state, jitted with the
cache donated, one token per `lax.fori_loop` iteration."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import hf_reference as ref
from jaxrl_gen.models import hf, presets
from jaxrl_gen.models.mllama import Model

TOL = 1e-4
SEQ, PROMPT = 10, 6


def _decode(model, tokens, cache):
  """Teacher-forced decoding of tokens (B, n): logits of each step and the final cache."""
  graphdef, state = nnx.split(model)

  @functools.partial(jax.jit, donate_argnums=1)
  def run(state, cache, tokens):
    model = nnx.merge(graphdef, state)

    def body(i, carry):
      cache, logits = carry
      out = model(jax.lax.dynamic_slice_in_dim(tokens, i, 1, axis=1), cache=cache)
      return out.cache, logits.at[:, i].set(out.logits[:, 0])

    empty = jnp.zeros(tokens.shape + (model.config.text.vocab_size,), jnp.float32)
    return jax.lax.fori_loop(0, tokens.shape[1], body, (cache, empty))

  return run(state, cache, tokens)


def _decode_errors(model, ids, mask, full, **prompt_inputs):
  """Prefill PROMPT tokens (left-padded rows), then decode the rest one token at a time."""
  positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
  cache = model.init_cache(ids.shape[0], 16)
  out = model(jnp.asarray(ids[:, :PROMPT]), attention_mask=jnp.asarray(mask[:, :PROMPT]),
              positions=jnp.asarray(positions[:, :PROMPT]), cache=cache, **prompt_inputs)
  real = mask[:, :PROMPT].astype(bool)
  errors = [float(np.abs(np.asarray(out.logits) - full[:, :PROMPT])[real].max())]
  cache, logits = _decode(model, jnp.asarray(ids[:, PROMPT:]), out.cache)
  errors += np.abs(np.asarray(logits) - full[:, PROMPT:]).max(axis=(0, 2)).tolist()
  assert int(cache.index) == SEQ
  np.testing.assert_array_equal(np.asarray(cache.next_position), positions[:, -1] + 1)
  return errors


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, 96, size=(2, SEQ))
  mask = np.ones((2, SEQ), np.int64)
  mask[1, :3] = 0
  return rng, ids, mask


def _full(model, ids, mask, **inputs):
  positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
  return np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                          positions=jnp.asarray(positions), **inputs).logits)


def test_text_llama_cached_decode_matches_full_forward(tmp_path):
  model = hf.load_pretrained(ref.save(ref.llama(tied=True), tmp_path))
  _, ids, mask = _batch()
  errors = _decode_errors(model, ids, mask, _full(model, ids, mask))
  print(f"llama cached decode: max |logit diff| per call {['%.1e' % e for e in errors]}")
  assert max(errors) <= TOL


@pytest.fixture(scope="module")
def mllama(tmp_path_factory):
  return hf.load_pretrained(ref.save(ref.mllama(), tmp_path_factory.mktemp("mllama")))


def test_mllama_cached_decode_with_image_matches_full_forward(mllama):
  rng, ids, mask = _batch(1)
  ids[:, 4] = 96
  images = {k: jnp.asarray(v) for k, v in ref.image_batch(rng, [[6], [3]], SEQ, image_at=4).items()}
  # HF generate extends the cross-attention mask by repeating its last row; so does the cache.
  full = _full(mllama, ids, mask, **images)
  prompt = dict(images, cross_attention_mask=images["cross_attention_mask"][:, :PROMPT])
  errors = _decode_errors(mllama, ids, mask, full, **prompt)
  print(f"mllama cached decode (image): max |logit diff| per call {['%.1e' % e for e in errors]}")
  assert max(errors) <= TOL
  # The image runs once: precomputed cross states give the same prefill.
  states = mllama.encode_images(images["pixel_values"], images["aspect_ratio_ids"],
                                images["aspect_ratio_mask"])
  again = _decode_errors(mllama, ids, mask, full, cross_attention_states=states,
                         cross_attention_mask=prompt["cross_attention_mask"])
  assert max(again) <= TOL


def test_mllama_text_only_cached_decode(mllama):
  _, ids, mask = _batch(2)
  errors = _decode_errors(mllama, ids, mask, _full(mllama, ids, mask))
  assert max(errors) <= TOL


def test_hidden_states_and_logits_to_keep():
  model = Model(presets.get("tiny-text"), rngs=nnx.Rngs(0))
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 2048, (2, 5)))
  out = model(ids, return_hidden=True)
  assert out.hidden.shape == (2, 5, 128) and out.cache is None
  last = model(ids, logits_to_keep=1).logits
  np.testing.assert_allclose(np.asarray(last[:, 0]), np.asarray(out.logits[:, -1]), atol=1e-6)
  # the final-norm hidden state times the (tied) embedding table is the logits
  table = model.language_model.embed_tokens.embedding[...]
  np.testing.assert_allclose(np.asarray(out.hidden @ table.T), np.asarray(out.logits), atol=1e-4)
