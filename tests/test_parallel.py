"""Mesh from config, logical-axis sharding, models born sharded: a forward on 8 simulated
CPU devices with mesh (2, 2, 2) equals the single-device forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import hf_reference as ref
from configs import gp
from jaxrl_gen import config_lib, parallel
from jaxrl_gen.models import hf, mllama, presets


def test_mesh_shape_resolves_the_rest_and_rejects_misfits():
  assert parallel.mesh_shape((-1, 1, 1), 8) == (8, 1, 1)
  assert parallel.mesh_shape((2, -1, 2), 8) == (2, 2, 2)
  for shape, words in [((3, -1, 1), "does not fit 8 devices"), ((1, 1, 16), "needs 16 devices"),
                       ((-1, -1, 1), "at most one -1"), ((2, 2), "must have 3 entries")]:
    with pytest.raises(parallel.ShardingError, match=words):
      parallel.mesh_shape(shape, 8)
  mesh = parallel.make_mesh((2, 2, 2))
  assert mesh.axis_names == ("data", "fsdp", "tensor") and dict(mesh.shape)["tensor"] == 2


def test_logical_rules_to_partition_specs():
  rules = (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"), ("length", None))
  assert parallel.logical_to_spec(("embed", "mlp"), rules) == jax.P("fsdp", "tensor")
  # a mesh axis is used once: 'embed' cannot reuse fsdp after 'batch' took it
  spec = parallel.logical_to_spec(("batch", "length", "embed"), rules)
  assert spec == jax.P(("data", "fsdp"), None, None)
  assert parallel.logical_to_spec(("unknown", None), rules) == jax.P(None, None)
  with pytest.raises(parallel.ShardingError, match="'model' is not a mesh axis"):
    parallel.check_rules((("embed", "model"),))


def _tiny_inputs(batch=4, seq=12):
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 2048, (batch, seq))
  ids[:, 3] = 2048  # <|image|>
  pixel = rng.normal(size=(batch, 1, 4, 3, 56, 56)).astype(np.float32)
  ar_ids = np.array([[1], [6], [3], [2]])[:batch]
  ar_mask = np.array([[[1, 0, 0, 0]], [[1, 1, 1, 1]], [[1, 1, 1, 0]], [[1, 1, 0, 0]]])[:batch]
  cross = np.zeros((batch, seq, 1, 4), np.int64)
  cross[:, 3:] = ar_mask[:, None]
  return dict(input_ids=ids, pixel_values=pixel, aspect_ratio_ids=ar_ids,
              aspect_ratio_mask=ar_mask, cross_attention_mask=cross)


def _forward(model, inputs):
  return model(**{k: jnp.asarray(v) for k, v in inputs.items()}).logits


def test_process_local_data_reassembles_sharded_and_replicated_blocks():
  mesh = parallel.make_mesh((2, 2, 2))
  x = np.arange(8 * 6 * 4, dtype=np.float32).reshape(8, 6, 4)
  for spec in (P(("data", "fsdp"), None, "tensor"), P("tensor", "data"), P()):
    sharded = jax.device_put(x, NamedSharding(mesh, spec))
    np.testing.assert_array_equal(parallel.process_local_data(sharded), x)  # one process: all
  assert parallel.process_local_data(jnp.float32(3)) == 3


def test_sharded_forward_equals_single_device():
  config = presets.get("tiny")
  mesh = parallel.make_mesh((2, 2, 2))
  sharded = mllama.create(config, mesh=mesh, seed=3)
  single = mllama.create(config, seed=3)
  # gates are 0 at init; open them so the image path counts
  for model in (sharded, single):
    layer = model.language_model.layers[3]
    layer.cross_attn_attn_gate[...] = jnp.full_like(layer.cross_attn_attn_gate[...], 0.7)
    layer.cross_attn_mlp_gate[...] = jnp.full_like(layer.cross_attn_mlp_gate[...], 0.5)
  kernel = sharded.language_model.layers[0].mlp.gate_proj.kernel[...]
  assert kernel.sharding.spec == jax.P(None, "fsdp", "tensor")
  assert kernel.addressable_shards[0].data.shape == (1, 64, 192)  # (1, 128, 384) / (1, 2, 2)
  vision = sharded.vision_model.transformer.layers.self_attn.q_proj.kernel[...]
  assert vision.sharding.spec == jax.P(None, "fsdp", "tensor", None)
  inputs = _tiny_inputs()
  want = nnx.jit(_forward)(single, inputs)
  with jax.set_mesh(mesh):
    got = nnx.jit(_forward)(sharded, inputs)
  assert got.sharding.spec[0] == ("data", "fsdp")  # activations follow the rules
  diff = float(np.abs(np.asarray(want) - np.asarray(got)).max())
  print(f"mesh (2,2,2) vs single device: max |logit diff| = {diff:.2e}")
  assert diff <= 1e-4


def test_split_state_trains_under_jit_with_shardings():
  config = presets.get("tiny-text")
  mesh = parallel.make_mesh((2, 2, 2))
  graphdef, state = nnx.split(mllama.create(config, mesh=mesh))
  shardings = parallel.state_shardings(mllama.abstract(config)[1], mesh, config.rules)
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 2048, (4, 8)))

  def loss(state, ids):
    logits = nnx.merge(graphdef, state)(ids).logits
    return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])

  with jax.set_mesh(mesh):
    step = jax.jit(jax.grad(loss), in_shardings=(shardings, None), out_shardings=shardings)
    grads = step(state, ids)
  grad = grads["language_model"]["layers"][0]["self_attn"]["q_proj"]["kernel"][...]
  assert grad.sharding.spec == jax.P(None, "fsdp", "tensor", None)
  assert float(jnp.abs(grad).max()) > 0


def test_load_pretrained_on_mesh_is_sharded_and_exact(tmp_path):
  path = ref.save(ref.llama(tied=False), tmp_path)
  mesh = parallel.make_mesh((2, 2, 2))
  sharded, single = hf.load_pretrained(path, mesh=mesh), hf.load_pretrained(path)
  head = sharded.lm_head.kernel[...]
  assert head.sharding.spec == jax.P("fsdp", "tensor")
  assert head.addressable_shards[0].data.shape == (32, 48)
  np.testing.assert_array_equal(np.asarray(head), np.asarray(single.lm_head.kernel[...]))
  ids = jnp.asarray(np.random.default_rng(1).integers(0, 96, (4, 6)))
  with jax.set_mesh(mesh):
    got = nnx.jit(lambda m, x: m(x).logits)(sharded, ids)
  np.testing.assert_allclose(np.asarray(got), np.asarray(single(ids).logits), atol=1e-5)


def test_config_validation_of_mesh_and_model():
  config = gp.get_config("l")
  assert config.mesh.shape == (-1, 1, 1) and config.model.dtype == "auto"
  config_lib.validate_model(config, num_devices=8)
  cases = [
      (dict(shape=(3, -1, 1)), "config.mesh: mesh shape (3, -1, 1) does not fit 8 devices"),
      (dict(shape=(1, 1, 8)), "language_model.layers.0.self_attn.k_proj.kernel: dimension 2"
                              " (kv_heads=2) is not divisible by its 8 shards"),
      (dict(rules=(("embed", "model"),)), "'model' is not a mesh axis"),
  ]
  for change, message in cases:
    bad = gp.get_config("l")
    with bad.unlocked():
      bad.mesh.update(change)
    with pytest.raises(config_lib.ConfigError) as info:
      config_lib.validate_model(bad, num_devices=8)
    assert message in str(info.value) and "\n" not in str(info.value)
  bad = gp.get_config("l")
  bad.model.remat = "everything"
  with pytest.raises(config_lib.ConfigError, match="config.model.remat='everything'"):
    config_lib.validate_model(bad, num_devices=8)


def test_kv_cache_shards_by_its_logical_axes():
  config = presets.get("tiny-text")
  mesh = parallel.make_mesh((2, 2, 2))
  model = mllama.create(config, mesh=mesh)
  cache = model.init_cache(4, 16)
  cache = jax.device_put(cache, parallel.logical_shardings(cache, cache.logical_axes(), mesh,
                                                           config.rules))
  # keys stored (R, B, KV, D, L), values (R, B, KV, L, D): batch and kv heads sharded
  assert cache.keys[0].sharding.spec == jax.P(None, ("data", "fsdp"), "tensor", None, None)
  assert cache.values[0].sharding.spec == jax.P(None, ("data", "fsdp"), "tensor", None, None)
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 2048, (4, 8)))
  with jax.set_mesh(mesh):
    out = nnx.jit(lambda m, x, c: m(x, cache=c))(model, ids, cache)
  np.testing.assert_allclose(np.asarray(out.logits), np.asarray(model(ids).logits), atol=1e-5)
