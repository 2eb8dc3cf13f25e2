"""The sampler against transformers on the same tiny weights (fp32, CPU): greedy tokens equal
`generate`'s (text Llama, Mllama with images, mixed prompt lengths and an EOS mid-batch);
every cached step's logits equal a full forward's (1e-4); returned log-probs equal
log_softmax(logits / T) of a teacher-forced forward."""

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from transformers.models.mllama import processing_mllama

import hf_reference as ref
from jaxrl_gen import sampling
from jaxrl_gen.models import hf

TOL = 1e-4
IMAGE = 96  # the reference Mllama's <|image|> id
PAD = ref.TOKENS["pad_token_id"]


def _prompts(seed, lengths, image_rows=()):
  rng = np.random.default_rng(seed)
  prompts = [rng.integers(3, 96, n).tolist() for n in lengths]
  for i in image_rows:
    prompts[i][1] = IMAGE
  return prompts


def _hf_generate(model, prompts, new, eos_ids, images=None):
  """transformers' greedy generate on the left-padded batch (processor-style inputs)."""
  length = max(map(len, prompts))
  ids = np.full((len(prompts), length), PAD)
  mask = np.zeros_like(ids)
  for i, p in enumerate(prompts):
    ids[i, length - len(p):], mask[i, length - len(p):] = p, 1
  inputs = dict(input_ids=ids, attention_mask=mask)
  if images is not None:
    spans = [processing_mllama.get_cross_attention_token_mask(row.tolist(), IMAGE) for row in ids]
    tiles = [[int(t) for t in row.sum(-1)] for row in images.aspect_ratio_mask]
    cross = processing_mllama.convert_sparse_cross_attention_mask_to_dense(
        spans, tiles, max_num_tiles=4, length=length)
    n_img = images.pixel_values.shape[1]
    full = np.zeros((len(prompts), length, n_img, 4), np.int64)
    full[:, :, :cross.shape[2]] = cross
    inputs.update(pixel_values=images.pixel_values, aspect_ratio_ids=images.aspect_ratio_ids,
                  aspect_ratio_mask=images.aspect_ratio_mask, cross_attention_mask=full)
  with torch.no_grad():
    out = model.generate(**{k: torch.as_tensor(v) for k, v in inputs.items()}, do_sample=False,
                         max_new_tokens=new, eos_token_id=list(eos_ids), pad_token_id=PAD)
  return out[:, length:].numpy()


def _ours(model, prompts, new, eos_ids=(), images=None, **kw):
  kw.setdefault("temperature", 0.0)
  return sampling.generate(model, prompts, images=images, key=jax.random.key(0),
                           max_new_tokens=new, eos_ids=eos_ids, pad_id=PAD,
                           prompt_buckets=(16,), batch_buckets=(4,), **kw)


def _assert_same_greedy(reference, ours, prompts, new, images=None):
  # Pick as EOS a token some row first emits mid-way: that row stops early, others go on.
  free = _ours(ours, prompts, new, images=images).tokens
  row, step = next((i, t) for t in range(1, new - 1) for i in range(len(prompts))
                   if free[i, t] not in free[i, :t])
  eos = int(free[row, step])
  want = _hf_generate(reference, prompts, new, (eos,), images)
  got = _ours(ours, prompts, new, (eos,), images)
  n = want.shape[1]
  np.testing.assert_array_equal(got.tokens[:, :n], want)
  assert (got.tokens[:, n:] == PAD).all()
  stops = [int(np.argmax(row == eos)) + 1 if eos in row else new for row in got.tokens]
  np.testing.assert_array_equal(got.lengths, stops)
  np.testing.assert_array_equal(got.finished, [eos in row for row in got.tokens])
  assert got.lengths[row] == step + 1 and got.finished[row]
  return got


def test_greedy_llama_matches_transformers_generate(tmp_path):
  reference = ref.llama(tied=False)
  ours = hf.load_pretrained(ref.save(reference, tmp_path))
  prompts = _prompts(0, (5, 11, 2))
  got = _assert_same_greedy(reference, ours, prompts, new=10)
  assert got.tokens.shape == (3, 10) and got.prompt_hidden.shape == (3, 64)


@pytest.fixture(scope="module")
def mllama_pair(tmp_path_factory):
  reference = ref.mllama()
  return reference, hf.load_pretrained(ref.save(reference, tmp_path_factory.mktemp("mllama")))


def _images(rows, seed=1):
  batch = ref.image_batch(np.random.default_rng(seed), rows, seq=1)
  return sampling.ImageInputs(batch["pixel_values"], batch["aspect_ratio_ids"],
                              batch["aspect_ratio_mask"])


def test_greedy_mllama_with_images_matches_transformers_generate(mllama_pair):
  reference, ours = mllama_pair
  # rows: a 2x2-tile image, no image (zero image, zero mask: transformers' padding), 1x3 tiles
  prompts = _prompts(1, (6, 4, 9), image_rows=(0, 2))
  images = _images([[6], [0], [3]])
  _assert_same_greedy(reference, ours, prompts, new=8, images=images)


def test_greedy_mllama_text_only_matches_transformers_generate(mllama_pair):
  reference, ours = mllama_pair
  _assert_same_greedy(reference, ours, _prompts(2, (7, 3)), new=8)


def _teacher_forced(model, prompts, generated, images=None):
  """Full-sequence fp32 logits at each generated token's step and the final hidden state at
  each last prompt token: one batched forward over the rows [prompt; generated],
  right-padded (causal attention keeps padding out of the past)."""
  seqs = [list(p) + list(g) for p, g in zip(prompts, generated)]
  length = max(map(len, seqs))
  ids = np.zeros((len(seqs), length), np.int32)
  for i, q in enumerate(seqs):
    ids[i, :len(q)] = q
  kw = {}
  if images is not None:
    cross = np.zeros((len(seqs), length) + images.aspect_ratio_mask.shape[1:], np.int32)
    for i, (p, g) in enumerate(zip(prompts, generated)):
      rows = sampling.inputs.cross_attention_mask(p, IMAGE, images.aspect_ratio_mask[i])
      cross[i, :len(p)] = rows
      cross[i, len(p):len(p) + len(g)] = rows[-1]  # generate repeats the last row
    kw = dict(pixel_values=images.pixel_values, aspect_ratio_ids=images.aspect_ratio_ids,
              aspect_ratio_mask=images.aspect_ratio_mask, cross_attention_mask=cross)
  out = nnx.jit(lambda m, ids, kw: m(ids, return_hidden=True, **kw))(model, ids, kw)
  logits, hidden = np.asarray(out.logits), np.asarray(out.hidden)
  return ([logits[i, len(p) - 1:len(p) - 1 + len(g)]
           for i, (p, g) in enumerate(zip(prompts, generated))],
          np.stack([hidden[i, len(p) - 1] for i, p in enumerate(prompts)]))


def test_cached_decode_logits_equal_full_forward_at_every_step(mllama_pair):
  _, ours = mllama_pair
  prompts = _prompts(3, (6, 12, 3), image_rows=(0, 1))
  images = _images([[2], [6], [0]], seed=4)
  got = _ours(ours, prompts, 9, images=images, return_logits=True)
  assert got.logits.shape == (3, 9, 96)
  wants, hidden = _teacher_forced(ours, prompts, got.tokens.tolist(), images)
  worst = max(float(np.abs(got.logits[i] - want).max()) for i, want in enumerate(wants))
  print(f"cached decode vs full forward: max |logit diff| = {worst:.1e}")
  assert worst <= TOL
  np.testing.assert_allclose(got.prompt_hidden, hidden, atol=TOL)  # what the value head reads


def test_logprobs_equal_tempered_log_softmax_of_teacher_forced_forward(tmp_path):
  ours = hf.load_pretrained(ref.save(ref.llama(tied=True), tmp_path))
  prompts = _prompts(5, (4, 10, 7))
  temperature = 0.7
  got = _ours(ours, prompts, 12, temperature=temperature, top_k=20, top_p=0.9, eos_ids=(2,))
  generated = got.token_lists()
  for i, logits in enumerate(_teacher_forced(ours, prompts, generated)[0]):
    n = len(generated[i])
    logp = np.asarray(jax.nn.log_softmax(logits / temperature, axis=-1))
    want = np.take_along_axis(logp, np.asarray(generated[i])[:, None], 1)[:, 0]
    np.testing.assert_allclose(got.logprobs[i, :n], want, atol=TOL)
    assert (got.logprobs[i, n:] == 0).all()
