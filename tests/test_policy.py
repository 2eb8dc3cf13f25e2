"""ModelPolicy: its answers are one direct `sampling.generate` call on the processor's
encoding of the same conversations (GP-VL with card images, GP-L text with revision turns)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_gen import policy as policy_lib
from jaxrl_gen import sampling
from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.text.processor import Processor

SAMPLING = dict(max_new_tokens=12, temperature=0.8, top_p=0.95, top_k=0)


@pytest.fixture(scope="module")
def tiny():
  # Random weights drawn on the host (mllama.create compiles one initializer per shape: ~10 s);
  # the cross-attention gates are nonzero, so the images change the answers.
  config = presets.get("tiny")
  graphdef, abstract = mllama.abstract(config)
  rng = np.random.default_rng(5)
  state = jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.5, a.shape), a.dtype), abstract)
  processor = Processor.create("", image_size=config.vision.image_size,
                               max_tiles=config.vision.max_num_tiles)
  return nnx.merge(graphdef, state), processor


def _conversations(params, seeds, revise=()):
  """First turns of the hands `seeds`; hands in `revise` after one failed attempt."""
  out = []
  for seed in seeds:
    state, conversation = gp.reset(seed, params)
    if seed in revise:
      _, conversation, *_ = gp.step(state, '{"formula": "1+"}', params)
    out.append(conversation)
  return out


def _direct(model, processor, conversations, key):
  encoded = [processor.encode_prompt(c) for c in conversations]
  ids = [e.ids for e in encoded]
  images = None
  if any(e.images for e in encoded):
    arrays = processor.image_inputs([e.images for e in encoded], ids)
    images = sampling.ImageInputs(
        arrays["pixel_values"], arrays["aspect_ratio_ids"], arrays["aspect_ratio_mask"],
        cross_attention_mask=[arrays["cross_attention_mask"][i, :len(row)]
                              for i, row in enumerate(ids)])
  result = sampling.generate(model, ids, key=key, images=images, eos_ids=processor.ids.stop,
                             pad_id=processor.ids.pad, **SAMPLING)
  return ids, result


@pytest.mark.parametrize("variant", ["vl", "l"])
def test_answers_equal_a_direct_generate_call(tiny, variant):
  model, processor = tiny
  if variant == "vl":
    params = gp.EnvParams(language_only=False, color="black", resolution=64)
    conversations = _conversations(params, (1, 2, 3))
  else:
    params = gp.EnvParams()
    conversations = _conversations(params, (1, 2, 3), revise=(2,))
    assert len(conversations[1]) == 3  # prompt, failed answer, "You failed this trial ..."
  key = jax.random.key(7)
  policy = policy_lib.ModelPolicy(model, processor, sampling_kwargs=SAMPLING)
  generations = policy.generate(conversations, key)
  ids, result = _direct(model, processor, conversations, key)
  assert [g.text for g in generations] == policy(conversations, key)
  for i, g in enumerate(generations):
    n = int(result.lengths[i])
    np.testing.assert_array_equal(g.prompt_ids, ids[i])
    np.testing.assert_array_equal(g.tokens, result.tokens[i, :n])
    np.testing.assert_allclose(g.logprobs, result.logprobs[i, :n], rtol=1e-6)
    np.testing.assert_allclose(g.prompt_hidden, result.prompt_hidden[i], rtol=1e-6)
    assert g.finished == bool(result.finished[i])
    assert g.text == processor.tokenizer.decode(result.tokens[i, :n].tolist(),
                                                skip_special_tokens=True)
    assert (g.image_arrays is not None) == (variant == "vl")
  assert len({tuple(g.tokens) for g in generations}) == len(generations)  # rows differ
  if variant == "vl":  # the images reach the model
    text_only = sampling.generate(model, ids, key=key, eos_ids=processor.ids.stop,
                                  pad_id=processor.ids.pad, **SAMPLING)
    assert not np.array_equal(text_only.logprobs, result.logprobs)


def test_max_rows_answers_in_consecutive_calls(tiny):
  """`sampling.max_rows` = 2: five conversations are answered by three calls of at most two,
  call i with fold_in(key, i) (call 0 with the key itself), in order."""
  model, processor = tiny
  conversations = _conversations(gp.EnvParams(), (1, 2, 3, 4, 5))
  key = jax.random.key(7)
  chunked = policy_lib.ModelPolicy(model, processor, sampling_kwargs=SAMPLING, max_rows=2)
  got = chunked.generate(conversations, key)
  assert len(got) == 5
  whole = policy_lib.ModelPolicy(model, processor, sampling_kwargs=SAMPLING)
  for i, call_key in enumerate([key, jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)]):
    want = whole.generate(conversations[2 * i:2 * i + 2], call_key)
    for g, w in zip(got[2 * i:2 * i + 2], want, strict=True):
      np.testing.assert_array_equal(g.prompt_ids, w.prompt_ids)
      np.testing.assert_array_equal(g.tokens, w.tokens)
