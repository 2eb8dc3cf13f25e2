"""Bounded compilation (real XLA compiles, counted from JAX's backend-compile events) and the
sampler under a (2, 2, 2) mesh of simulated devices."""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax._src import dispatch

from jaxrl_gen import parallel, sampling
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.models.mllama import Model
from jaxrl_gen.sampling import api

PROMPT_BUCKETS, BATCH_BUCKETS = (8, 16, 32), (2, 4)


@pytest.fixture
def compiles():
  """Counts XLA compilations per jitted function name while the test runs."""
  counts = collections.Counter()

  def listener(event, duration, **kw):
    if event == dispatch.BACKEND_COMPILE_EVENT:
      counts[kw.get("fun_name")] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  yield counts
  jax.monitoring.unregister_event_duration_listener(listener)


def test_compilations_equal_buckets_touched_over_50_calls(compiles):
  model = Model(presets.get("tiny-text"), rngs=nnx.Rngs(0))
  api._PROGRAMS.clear()  # noqa: SLF001  (start from a cold compile cache)
  rng = np.random.default_rng(0)
  touched = set()
  for _ in range(50):
    rows = int(rng.integers(1, 5))
    lengths = rng.integers(1, 30, rows)
    new = int(rng.integers(1, 9))  # one token bucket (8): the budget is a runtime value
    prompts = [rng.integers(0, 2048, n).tolist() for n in lengths]
    result = sampling.generate(model, prompts, key=jax.random.key(int(rng.integers(1 << 30))),
                               max_new_tokens=new, temperature=0.8, top_p=0.9, eos_ids=(5,),
                               prompt_buckets=PROMPT_BUCKETS, batch_buckets=BATCH_BUCKETS)
    assert result.tokens.shape == (rows, new)
    touched.add((min(b for b in PROMPT_BUCKETS if b >= max(lengths)),
                 min(b for b in BATCH_BUCKETS if b >= rows)))
  count = compiles["jit(sampling_program)"]
  print(f"50 calls: {len(touched)} buckets touched, {count} compilations")
  assert len(touched) >= 4
  assert compiles["jit(sampling_program)"] == len(touched)
  # New sampling settings are a new program; the same settings again, or other EOS ids
  # (a runtime array), are not.
  for eos in ((5,), (5,), (7,), ()):
    sampling.generate(model, [[1, 2, 3]], key=jax.random.key(0), max_new_tokens=3,
                      temperature=0.0, eos_ids=eos, prompt_buckets=PROMPT_BUCKETS,
                      batch_buckets=BATCH_BUCKETS)
  assert compiles["jit(sampling_program)"] == len(touched) + 1


def _open_gates(model):
  for j in model.language_model.cross_slots:
    layer = model.language_model.layers[j]
    layer.cross_attn_attn_gate[...] = jnp.full_like(layer.cross_attn_attn_gate[...], 0.7)
    layer.cross_attn_mlp_gate[...] = jnp.full_like(layer.cross_attn_mlp_gate[...], 0.5)


def test_sampler_on_a_mesh_equals_single_device():
  config = presets.get("tiny")
  mesh = parallel.make_mesh((2, 2, 2))
  sharded = mllama.create(config, mesh=mesh, seed=3)
  _open_gates(sharded)
  graphdef, state = nnx.split(sharded)
  single = nnx.merge(graphdef, jax.device_put(state, jax.devices()[0]))
  rng = np.random.default_rng(1)
  prompts = [rng.integers(0, 2048, n).tolist() for n in (7, 3, 12)]
  prompts[0][2] = prompts[2][1] = config.image_token_id
  pixels = np.zeros((3, 1, 4, 3, 56, 56), np.float32)
  pixels[[0, 2]] = rng.normal(size=(2, 1, 4, 3, 56, 56))
  images = sampling.ImageInputs(pixels, np.array([[6], [0], [3]]),
                                np.array([[[1, 1, 1, 1]], [[1, 0, 0, 0]], [[1, 1, 1, 0]]]))
  args = dict(images=images, key=jax.random.key(4), max_new_tokens=6, temperature=0.9,
              top_k=40, eos_ids=(), prompt_buckets=(16,), batch_buckets=(1, 2))
  got = sampling.generate(sharded, prompts, mesh=mesh, **args)
  want = sampling.generate(single, prompts, **args)
  np.testing.assert_array_equal(got.tokens, want.tokens)
  np.testing.assert_allclose(got.logprobs, want.logprobs, atol=1e-4)
  np.testing.assert_allclose(got.prompt_hidden, want.prompt_hidden, atol=1e-4)
  # The batch (3 rows, bucket 2 -> 4: a multiple of the 4 data x fsdp shards) is split over
  # ('data', 'fsdp'), the KV cache's heads over 'tensor'.
  program = next(fn for key, fn in api._PROGRAMS.items() if key[1] is mesh)  # noqa: SLF001
  with jax.set_mesh(mesh):
    hlo = program.lower(state, *_batch_args(sharded, prompts, args)).as_text()
  batch = re.escape('[{"data", "fsdp"}, {}]')
  assert re.search(r"tensor<4x16xi32> \{sdy.sharding = #sdy.sharding<@mesh, " + batch, hlo)
  spec = re.escape('<@mesh, [{}, {"data", "fsdp"}, {"tensor"}, {}, {}]> : ')
  for shape in ("1x4x2x32x24", "1x4x2x24x32"):  # keys (R, B, KV, D, L), values (R, B, KV, L, D)
    found = re.findall(r"sdy.sharding_constraint %\w+ " + spec + f"tensor<{shape}xf32>", hlo)
    assert len(found) == 4, f"KV cache {shape} not sharded over (batch, kv heads)"


def _batch_args(model, prompts, args):
  ids, mask = sampling.inputs.left_pad(prompts, 16, 4, 0)
  batch = dict(ids=ids, mask=mask, live=np.arange(4) < 3, eos=sampling.inputs.eos_array(()),
               row=np.arange(4, dtype=np.int32))
  batch.update(args["images"].padded(prompts, 16, 4, model.config.image_token_id))
  return batch, np.int32(6), args["key"]
