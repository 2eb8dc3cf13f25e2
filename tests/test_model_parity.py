"""Golden parity with transformers on CPU in fp32: our logits vs `LlamaForCausalLM` /
`MllamaForConditionalGeneration` with random weights (all gates non-zero), max |diff| <= 1e-4."""

import numpy as np
import pytest

import hf_reference as ref
from jaxrl_gen.models import hf

TOL = 1e-4


def _ours(model, **inputs):
  return np.asarray(model(**{k: np.asarray(v) for k, v in inputs.items()}).logits)


@pytest.fixture(scope="module")
def mllama_pair(tmp_path_factory):
  reference = ref.mllama()
  return reference, hf.load_pretrained(ref.save(reference, tmp_path_factory.mktemp("mllama")))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_llama_matches_transformers(tmp_path, tied):
  reference = ref.llama(tied)
  ours = hf.load_pretrained(ref.save(reference, tmp_path))
  assert (ours.lm_head is None) == tied
  rng = np.random.default_rng(0)
  ids = rng.integers(3, 96, size=(2, 11))
  mask = np.ones((2, 11), np.int64)
  mask[1, :4] = 0  # left padding, positions as HF generate computes them
  positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
  want = ref.logits(reference, input_ids=ids, attention_mask=mask, position_ids=positions)
  got = _ours(ours, input_ids=ids, attention_mask=mask, positions=positions)
  diff = np.abs(want - got)[mask.astype(bool)].max()
  print(f"llama ({'tied' if tied else 'untied'}): max |logit diff| = {diff:.2e}")
  assert diff <= TOL


@pytest.mark.parametrize("rows", [
    [[1], [3]],        # one image per row: 1 tile (1x1) and 3 tiles (1x3)
    [[6, 5], [2, 0]],  # two images: 4 tiles (2x2) + 2 tiles (2x1); a row with one padded image
    [[4], [0]],        # a row with an image (1x4) beside a row without one
], ids=["1tile-3tiles", "multi-image", "mixed-rows"])
def test_mllama_images_match_transformers(mllama_pair, rows):
  reference, ours = mllama_pair
  rng = np.random.default_rng(len(rows[0]))
  ids = rng.integers(3, 96, size=(2, 9))
  ids[:, 2] = 96  # <|image|>; earlier tokens see no image (the full-row-masked path)
  images = ref.image_batch(rng, rows, seq=9, image_at=2)
  want = ref.logits(reference, input_ids=ids, **images)
  got = _ours(ours, input_ids=ids, **images)
  diff = np.abs(want - got).max()
  effect = np.abs(want - ref.logits(reference, input_ids=ids)).max()
  print(f"mllama {rows}: max |logit diff| = {diff:.2e} (image changes logits by {effect:.2e})")
  assert effect > 1e-2  # the comparison exercises the image path
  assert diff <= TOL


def test_mllama_text_only_matches_transformers(mllama_pair):
  reference, ours = mllama_pair
  ids = np.random.default_rng(1).integers(3, 96, size=(2, 7))
  diff = np.abs(ref.logits(reference, input_ids=ids) - _ours(ours, input_ids=ids)).max()
  print(f"mllama text-only: max |logit diff| = {diff:.2e}")
  assert diff <= TOL


def test_non_periodic_cross_layers_and_unscanned(tmp_path):
  # Cross layers [1, 2] of 4 have no period: one unscanned block. scan_layers=False and a
  # remat policy take other code paths through the same weights.
  reference = ref.mllama(num_layers=4, cross=(1, 2))
  path = ref.save(reference, tmp_path)
  rng = np.random.default_rng(2)
  ids = rng.integers(3, 96, size=(2, 6))
  images = ref.image_batch(rng, [[2], [5]], seq=6, image_at=1)
  want = ref.logits(reference, input_ids=ids, **images)
  for options in ({}, {"scan_layers": False, "remat": "full"}):
    ours = hf.load_pretrained(path, **options)
    assert ours.language_model.repeats == 1
    diff = np.abs(want - _ours(ours, input_ids=ids, **images)).max()
    print(f"mllama cross [1, 2] {options}: max |logit diff| = {diff:.2e}")
    assert diff <= TOL


def test_mini_vision_preset_matches_transformers(tmp_path):
  """The GP-VL miniature's shape (one 96 px tile, 24 px patches, open gates from random init):
  our randomly initialised model, written with save_pretrained, is transformers' model."""
  import torch  # noqa: PLC0415
  import transformers  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  from jaxrl_gen.models import mllama, presets  # noqa: PLC0415

  config = presets.get("mini-vision")
  ours = mllama.Model(config, rngs=nnx.Rngs(0))
  gates = [np.asarray(v.get_value()) for path, v in nnx.to_flat_state(nnx.state(ours))
           if str(path[-1]).endswith("_gate")]
  assert len(gates) == 2 and all(np.all(g == 0.5) for g in gates)
  hf.save_pretrained(ours, str(tmp_path))
  reference = transformers.MllamaForConditionalGeneration.from_pretrained(
      str(tmp_path), dtype=torch.float32).eval()
  rng = np.random.default_rng(0)
  ids = rng.integers(3, 2000, size=(2, 9))
  ids[:, 2] = config.image_token_id
  v = config.vision
  images = dict(pixel_values=rng.normal(size=(2, 1, 1, 3, v.image_size, v.image_size)
                                        ).astype(np.float32),
                aspect_ratio_ids=np.ones((2, 1), np.int64),
                aspect_ratio_mask=np.ones((2, 1, 1), np.int64),
                cross_attention_mask=np.zeros((2, 9, 1, 1), np.int64))
  images["cross_attention_mask"][:, 2:] = 1
  want = ref.logits(reference, input_ids=ids, **images)
  got = _ours(ours, input_ids=ids, **images)
  diff = np.abs(want - got).max()
  effect = np.abs(want - ref.logits(reference, input_ids=ids)).max()
  print(f"mini-vision: max |logit diff| = {diff:.2e} (image changes logits by {effect:.2e})")
  assert effect > 1e-3 and diff <= TOL
