"""Sampler input preparation: buckets, left padding, the cross-attention mask from
`<|image|>` tokens (checked against transformers' processing_mllama), argument errors."""

import importlib.util

import jax
import numpy as np
import pytest
from flax import nnx
from transformers.models.mllama import processing_mllama

from jaxrl_gen import config_lib, sampling
from jaxrl_gen.models import presets
from jaxrl_gen.models.mllama import Model
from jaxrl_gen.sampling import inputs


def test_buckets_round_up_and_past_the_largest():
  assert [inputs.bucket(n, (8, 16, 32)) for n in (1, 8, 9, 32, 33, 70)] == [8, 8, 16, 32, 64, 96]
  assert inputs.bucket(3, (1, 2, 4, 8), multiple=8) == 8   # batch shards
  assert inputs.bucket(9, (1, 2, 4, 8, 16), multiple=4) == 16
  assert [inputs.token_bucket(n) for n in (1, 8, 9, 64, 65, 512)] == [8, 8, 16, 64, 128, 512]
  for bad in ((), (8, 8), (16, 8), (0, 4)):
    with pytest.raises(ValueError, match="strictly increasing"):
      inputs.check_buckets("prompt_buckets", bad)


def test_eos_ids_become_a_padded_runtime_array():
  assert inputs.eos_array(()).tolist() == [-1]
  assert inputs.eos_array((9, 3, 9)).tolist() == [3, 9]
  assert inputs.eos_array((1, 2, 3)).tolist() == [1, 2, 3, -1]


def test_left_pad_right_aligns_prompts_and_pads_extra_rows():
  ids, mask = inputs.left_pad([[5, 6, 7], [9]], length=4, rows=3, pad_id=0)
  np.testing.assert_array_equal(ids, [[0, 5, 6, 7], [0, 0, 0, 9], [0, 0, 0, 0]])
  np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])


@pytest.mark.parametrize("ids", [
    [3, 9, 4, 4, 5],                 # one image
    [9, 3, 4, 9, 5, 6],              # two images, text between
    [3, 9, 9, 4, 5, 9, 6],           # a run of two adjacent images, then a third
    [9, 9, 9],                       # only image tokens
    [3, 4, 5],                       # no image token
    [3, 4, 9],                       # image token last
])
def test_cross_attention_mask_matches_transformers_processor(ids):
  tiles = [2, 4, 1]
  ar_mask = np.zeros((3, 4), np.int32)
  for k, n in enumerate(tiles):
    ar_mask[k, :n] = 1
  got = inputs.cross_attention_mask(ids, 9, ar_mask)
  spans = processing_mllama.get_cross_attention_token_mask(ids, 9)
  n_img = max(1, len(spans))
  want = processing_mllama.convert_sparse_cross_attention_mask_to_dense(
      [spans], [tiles[:n_img]], max_num_tiles=4, length=len(ids))[0]
  np.testing.assert_array_equal(got[:, :want.shape[1]], want)
  assert not got[:, want.shape[1]:].any()  # images without a token are seen by nobody


def test_image_rows_stack_with_processor_padding():
  rng = np.random.default_rng(0)
  row = dict(pixel_values=rng.normal(size=(1, 1, 4, 3, 8, 8)), aspect_ratio_ids=np.array([[2]]),
             aspect_ratio_mask=np.array([[[1, 1, 0, 0]]]))
  images = inputs.ImageInputs.from_rows([row, None])
  assert images.pixel_values.shape == (2, 1, 4, 3, 8, 8) and not images.pixel_values[1].any()
  np.testing.assert_array_equal(images.aspect_ratio_ids, [[2], [0]])
  np.testing.assert_array_equal(images.aspect_ratio_mask, [[[1, 1, 0, 0]], [[1, 0, 0, 0]]])
  padded = images.padded([[3, 9, 4], [5, 6]], length=4, rows=3, image_token_id=9)
  assert padded["cross_attention_mask"].shape == (3, 4, 1, 4)
  np.testing.assert_array_equal(padded["cross_attention_mask"][0, :, 0, :2], [[0, 0], [0, 0],
                                                                             [1, 1], [1, 1]])
  assert not padded["cross_attention_mask"][1:].any()
  np.testing.assert_array_equal(padded["aspect_ratio_mask"][2], [[1, 0, 0, 0]])


def test_image_slots_pad_to_a_larger_count_with_processor_padding():
  # Another process's rows have 2 images: this batch's single slot is padded to 2.
  ar_mask = np.array([[[1, 1, 0, 0]]])
  given = [np.ones((3, 1, 4), np.int32)]
  for cross in (None, given):
    images = inputs.ImageInputs(np.ones((1, 1, 4, 3, 8, 8)), np.array([[2]]), ar_mask, cross)
    padded = images.padded([[3, 9, 4]], length=4, rows=2, image_token_id=9, images=2)
    assert padded["pixel_values"].shape == (2, 2, 4, 3, 8, 8)
    assert padded["pixel_values"][0, 0].all() and not padded["pixel_values"][:, 1].any()
    np.testing.assert_array_equal(padded["aspect_ratio_ids"], [[2, 0], [0, 0]])
    np.testing.assert_array_equal(padded["aspect_ratio_mask"][0], [[1, 1, 0, 0], [1, 0, 0, 0]])
    want = np.zeros((4, 2, 4), np.int32)
    want[1 if cross is given else 2:, 0] = [1, 1, 1, 1] if cross is given else [1, 1, 0, 0]
    np.testing.assert_array_equal(padded["cross_attention_mask"][0], want)
    assert not padded["cross_attention_mask"][1].any()
  blank = inputs.ImageInputs.blank(2, 3, (4, 3, 8, 8))
  assert not blank.pixel_values.any() and not blank.aspect_ratio_ids.any()
  np.testing.assert_array_equal(blank.aspect_ratio_mask[1, 2], [1, 0, 0, 0])


@pytest.fixture(scope="module")
def tiny_text():
  return Model(presets.get("tiny-text"), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("change, message", [
    (dict(prompts=[]), "generate: no prompts"),
    (dict(prompts=[[1, 2], []]), r"prompts\[1\]: expected a non-empty list of token ids"),
    (dict(prompts=[[1, 2048]]), r"prompts\[0\]: token id 2048 outside the model's 0..2047"),
    (dict(prompts=[[-1, 3]]), r"prompts\[0\]: token id -1 outside"),
    (dict(max_new_tokens=0), "max_new_tokens=0: must be a positive integer"),
    (dict(temperature=-0.5), "temperature=-0.5: must be >= 0"),
    (dict(top_p=0.0), r"top_p=0.0: must be in \(0, 1\]"),
    (dict(top_k=-1), "top_k=-1: must be a non-negative integer"),
    (dict(eos_ids=(5000,)), r"eos_ids=\(5000,\): ids must lie in 0..2047"),
    (dict(pad_id=-1), "pad_id=-1: ids must lie in"),
    (dict(cache_dtype="int8"), "cache_dtype='int8'"),
    (dict(prompt_buckets=(64, 32)), r"prompt_buckets=\(64, 32\): must be a non-empty"),
    (dict(images=inputs.ImageInputs(np.zeros((1, 1, 4, 3, 56, 56)), np.zeros((1, 1)),
                                    np.ones((1, 1, 4)))),
     "images given to a text-only model"),
])
def test_bad_arguments_fail_before_compiling_with_one_line(tiny_text, change, message):
  args = dict(prompts=[[1, 2, 3]], key=jax.random.key(0), max_new_tokens=4, temperature=0.0,
              eos_ids=(2,))
  args.update(change)
  with pytest.raises(ValueError, match=message) as info:
    sampling.generate(tiny_text, args.pop("prompts"), **args)
  assert "\n" not in str(info.value)


def test_bad_image_shapes_name_the_field():
  # Checked before any array is touched: an abstract model (shapes only) is enough.
  model = nnx.eval_shape(lambda: Model(presets.get("tiny"), rngs=nnx.Rngs(0)))
  args = dict(key=jax.random.key(0), max_new_tokens=4, temperature=0.0, eos_ids=())
  wrong_rows = inputs.ImageInputs(np.zeros((2, 1, 4, 3, 56, 56)), np.zeros((2, 1)),
                                  np.ones((2, 1, 4)))
  with pytest.raises(ValueError, match=r"images.pixel_values has shape \(2, 1, 4, 3, 56, 56\)"):
    sampling.generate(model, [[1, 2048, 3]], images=wrong_rows, **args)
  wrong_tiles = inputs.ImageInputs(np.zeros((1, 1, 2, 3, 56, 56)), np.zeros((1, 1)),
                                   np.ones((1, 1, 2)))
  with pytest.raises(ValueError, match="max_num_tiles=4"):
    sampling.generate(model, [[1, 2048, 3]], images=wrong_tiles, **args)
  wrong_mask = inputs.ImageInputs(np.zeros((1, 1, 4, 3, 56, 56)), np.zeros((1, 1)),
                                  np.ones((1, 1, 4)), cross_attention_mask=[np.ones((2, 1, 4))])
  with pytest.raises(ValueError, match=r"images.cross_attention_mask\[0\] has shape \(2, 1, 4\)"):
    sampling.generate(model, [[1, 2048, 3]], images=wrong_mask, **args)
  with pytest.raises(ValueError, match="images.cross_attention_mask has 1 rows: expected 2"):
    sampling.generate(model, [[1, 2048, 3], [5, 2048]], images=inputs.ImageInputs(
        np.zeros((2, 1, 4, 3, 56, 56)), np.zeros((2, 1)), np.ones((2, 1, 4)),
        cross_attention_mask=[np.ones((3, 1, 4))]), **args)


@pytest.mark.parametrize("name", ["gp", "virl"])
def test_config_sampling_section_validates_and_feeds_generate(repo_root, tiny_text, name):
  spec = importlib.util.spec_from_file_location(name, repo_root / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("l,llama-3.2-1b")  # a real preset: the reference's budget
  config_lib.validate_sampling(config)
  assert module.get_config("l,tiny").sampling.max_new_tokens == 128
  kw = sampling.kwargs_from_config(config.sampling)
  assert (kw["temperature"], kw["top_p"], kw["top_k"]) == (0.2, 1.0, 0)
  assert kw["max_new_tokens"] == 512 and kw["decode_layers"] == "auto"
  assert kw["cache_dtype"] is None and "sampling.cache_dtype" in config_lib.sampling_config.__doc__
  kw.update(max_new_tokens=3, prompt_buckets=(8,), batch_buckets=(1,))
  result = sampling.generate(tiny_text, [[4, 5]], key=jax.random.key(0), eos_ids=(), **kw)
  assert result.tokens.shape == (1, 3)
  for key, value, message in [("temperature", -1.0, "temperature=-1.0: must be >= 0"),
                              ("top_p", 1.5, r"top_p=1.5: must be in \(0, 1\]"),
                              ("prompt_buckets", (128, 64), r"prompt_buckets=\(128, 64\): must be strictly"),
                              ("cache_dtype", "int4", "cache_dtype='int4': must be one of"),
                              ("max_rows", -1, r"max_rows=-1: must be >= 0")]:
    bad = module.get_config("l")
    bad.sampling[key] = value
    with pytest.raises(config_lib.ConfigError, match=f"config.sampling.{message}"):
      config_lib.validate_sampling(bad)
