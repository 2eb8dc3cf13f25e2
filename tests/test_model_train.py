"""Training-facing behaviour: gradients through the scanned, rematerialised model (every
remat policy gives the same gradients), and freezing parts by parameter path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_gen.models import config as model_config
from jaxrl_gen.models import mllama, presets

FROZEN = nnx.Any(nnx.PathContains("vision_model"), nnx.PathContains("multi_modal_projector"))


def _batch():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 2048, (2, 8))
  ids[:, 1] = 2048
  cross = np.zeros((2, 8, 1, 4), np.int32)
  cross[0, 1:, 0, :2] = 1
  cross[1, 1:, 0, :1] = 1
  pixels = rng.normal(size=(2, 1, 4, 3, 56, 56))
  return dict(input_ids=jnp.asarray(ids), pixel_values=jnp.asarray(pixels, jnp.float32),
              aspect_ratio_ids=jnp.array([[2], [1]]),
              aspect_ratio_mask=jnp.array([[[1, 1, 0, 0]], [[1, 0, 0, 0]]]),
              cross_attention_mask=jnp.asarray(cross))


def _grads(preset: str, remat: str):
  config = presets.get(preset, remat=remat)
  model = mllama.create(config, seed=1)
  batch = _batch()
  if config.vision is None:
    batch = dict(input_ids=batch["input_ids"] % 2048)
  else:
    layer = model.language_model.layers[3]
    layer.cross_attn_attn_gate[...] = jnp.full((1, 1), 0.5)
    layer.cross_attn_mlp_gate[...] = jnp.full((1, 1), 0.5)
  graphdef, params = nnx.split(model)

  @jax.jit
  def grad(params, batch):
    def loss(params):
      out = nnx.merge(graphdef, params)(**batch, return_hidden=True)
      return jnp.mean(jax.nn.log_softmax(out.logits)[..., 7]) + jnp.mean(out.hidden ** 2)
    return jax.grad(loss)(params)

  return grad(params, batch)


def _same(a, b, policy):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6, err_msg=policy)


def test_remat_policies_give_the_same_gradients():
  want = _grads("tiny-text", "none")
  for policy in model_config.REMAT_POLICIES[1:]:
    _same(want, _grads("tiny-text", policy), policy)


def test_gradients_reach_the_vision_tower_through_remat():
  want = _grads("tiny", "none")
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(want))
  vision = want["vision_model"]["transformer"]["layers"]["self_attn"]["q_proj"]["kernel"][...]
  assert float(jnp.abs(vision).max()) > 0  # the image path is in the gradient
  _same(want, _grads("tiny", "full"), "full")


def test_freeze_by_path():
  model = nnx.eval_shape(lambda: mllama.Model(presets.get("tiny"), rngs=nnx.Rngs(0)))
  graphdef, frozen, trainable = nnx.split(model, FROZEN, nnx.Param)
  paths = lambda state: {".".join(map(str, p)) for p, _ in nnx.to_flat_state(state)}  # noqa: E731
  image_side = ("vision_model.", "multi_modal_projector.")
  assert paths(frozen) and all(p.startswith(image_side) for p in paths(frozen))
  assert paths(trainable) and not any(p.startswith(image_side) for p in paths(trainable))
  assert nnx.merge(graphdef, frozen, trainable).vision_model is not None


def test_unknown_remat_policy_is_an_error():
  with pytest.raises(ValueError, match="remat='most'"):
    presets.get("tiny", remat="most")
