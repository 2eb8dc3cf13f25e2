"""The SFT step: the masked fp32 loss, sharding (8 simulated devices), gradient
accumulation, freezing, and the optimizer against transformers/torch."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.train import loop, optim, sft
from jaxrl_gen.train import state as state_lib

IMAGE_TOKEN = 2048


def _optim(**changes):
  values = dict(lr=1e-3, b1=0.9, b2=0.98, eps=1e-7, weight_decay=0.0, schedule="cosine",
                warmup_ratio=0.03, end_lr_ratio=0.0, max_grad_norm=1.0)
  values.update(changes)
  return ml_collections.ConfigDict(values)


def _batch(rows=4, length=24, images=True, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, 2048, (rows, length)).astype(np.int32)
  lengths = rng.integers(length // 2, length + 1, rows)
  attention = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
  loss = attention * (np.arange(length)[None] >= 8)
  batch = {"input_ids": np.where(attention == 1, ids, 5), "attention_mask": attention,
           "loss_mask": loss.astype(np.int32)}
  if images:
    batch["input_ids"][:, 2] = IMAGE_TOKEN
    cross = np.zeros((rows, length, 1, 4), np.int32)
    cross[:, 2:, 0, :2] = 1
    batch.update(pixel_values=rng.normal(size=(rows, 1, 4, 3, 56, 56)).astype(np.float32),
                 aspect_ratio_ids=np.full((rows, 1), 2, np.int32),
                 aspect_ratio_mask=np.tile(np.array([[[1, 1, 0, 0]]], np.int32), (rows, 1, 1)),
                 cross_attention_mask=cross)
  return batch


_MODELS = {}


def _model(preset="tiny"):
  """One model per preset for the whole module (creating one takes seconds); the training
  state is split off it, so tests never change it."""
  if preset not in _MODELS:
    model = mllama.create(presets.get(preset), seed=0)
    if model.config.vision is not None:  # open the (zero-initialised) cross-attention gates
      layer = model.language_model.layers[3]
      layer.cross_attn_attn_gate[...] = jnp.full((1, 1), 0.5)
      layer.cross_attn_mlp_gate[...] = jnp.full((1, 1), 0.5)
    _MODELS[preset] = model
  return _MODELS[preset]


def _run(model, batch, *, steps=2, accum=1, mesh=None, freeze=()):
  tx = optim.optimizer(_optim(), 10)
  graphdef, state = state_lib.create(model, tx, seed=0, freeze=freeze)
  step = jax.jit(lambda s, b: sft.sft_step(s, b, graphdef=graphdef, tx=tx, accum=accum))
  if mesh is not None:
    shardings = state_lib.shardings(state, mesh, model.config.rules, tx)
    state = jax.device_put(state, shardings)
    bsh = {k: jax.sharding.NamedSharding(
        mesh, parallel.logical_to_spec(sft.BATCH_AXES[k], model.config.rules)) for k in batch}
    jitted = jax.jit(lambda s, b: sft.sft_step(s, b, graphdef=graphdef, tx=tx, accum=accum),
                     in_shardings=(shardings, bsh), out_shardings=(shardings, None))

    def step(s, b):  # traced under the mesh, as the trainer's steps are
      with jax.set_mesh(mesh):
        return jitted(s, b)
    batch = loop.to_global(batch, mesh, model.config.rules)
  history = []
  for _ in range(steps):
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  return state, history


def test_loss_is_the_masked_token_mean_in_fp32():
  model = _model("tiny-text")
  batch = _batch(images=False)
  graphdef, params, frozen, rest = state_lib.split_model(model)
  total, correct, count = sft.token_losses(graphdef, params, frozen, rest,
                                           jax.tree.map(jnp.asarray, batch))
  logits = np.asarray(model(jnp.asarray(batch["input_ids"])).logits, np.float64)[:, :-1]
  logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
      - logits.max(-1, keepdims=True)
  targets, weights = batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:]
  picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  assert count == weights.sum()
  np.testing.assert_allclose(float(total), -(picked * weights).sum(), rtol=1e-5)
  assert correct == ((logits.argmax(-1) == targets) * weights).sum()


def test_chunked_loss_equals_the_whole_sequence_loss_and_gradients():
  """sft.loss_chunk: the LM head and loss over pieces of the sequence (a last, padded one
  included) give the whole sequence's sums and gradients."""
  model = _model("tiny-text")
  batch = jax.tree.map(jnp.asarray, _batch(images=False))
  graphdef, params, frozen, rest = state_lib.split_model(model)

  def loss(params, chunk):
    total, correct, count = sft.token_losses(graphdef, params, frozen, rest, batch, chunk)
    return total, (correct, count)

  whole = jax.value_and_grad(loss, has_aux=True)(params, 0)
  for chunk in (5, 8, 23):
    pieces = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(params, chunk)
    np.testing.assert_allclose(float(pieces[0][0]), float(whole[0][0]), rtol=1e-6)
    assert pieces[0][1] == whole[0][1]
    for got, want in zip(jax.tree.leaves(pieces[1]), jax.tree.leaves(whole[1])):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=2e-6)


def test_bf16_moments_halve_the_optimizer_state_and_keep_the_update():
  """optim.moment_dtype='bfloat16': Adam's mu and nu are stored in bf16 (the count stays an
  integer); an update from them equals the fp32-moment update to bf16 precision."""
  model = _model("tiny-text")
  batch = _batch(images=False)
  results = {}
  for dtype in ("float32", "bfloat16"):
    tx = optim.optimizer(_optim(moment_dtype=dtype), 10)
    graphdef, state = state_lib.create(model, tx, seed=0)
    start = state.params
    floats = {x.dtype for x in jax.tree.leaves(state.opt_state)
              if jnp.issubdtype(x.dtype, jnp.floating)}
    assert floats == {jnp.dtype(dtype)}
    step = jax.jit(lambda s, b: sft.sft_step(s, b, graphdef=graphdef, tx=tx))
    for _ in range(3):
      state, _ = step(state, batch)
    results[dtype] = state.params
  flat = {k: np.concatenate([np.ravel(x) for x in jax.tree.leaves(v)])
          for k, v in dict(results, start=start).items()}
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(results["bfloat16"]))
  moved = np.linalg.norm(flat["float32"] - flat["start"])
  assert moved > 0
  assert np.linalg.norm(flat["bfloat16"] - flat["float32"]) < 0.02 * moved


def test_unsupervised_tokens_do_not_change_the_loss():
  model = _model("tiny")  # its embedding has the <|image|> row; the LM head does not
  batch = _batch(images=False)
  graphdef, params, frozen, rest = state_lib.split_model(model)
  loss = jax.jit(lambda b: sft.token_losses(graphdef, params, frozen, rest, b))
  before = loss(batch)
  changed = dict(batch, input_ids=batch["input_ids"].copy())
  # Padding after each row's end may hold anything, even ids past the LM head.
  changed["input_ids"][batch["attention_mask"] == 0] = IMAGE_TOKEN
  after = loss(changed)
  assert np.isfinite(float(before[0]))
  np.testing.assert_allclose(float(after[0]), float(before[0]), rtol=1e-6)
  assert after[2] == before[2]


def test_sharded_step_on_8_devices_equals_the_single_device_step():
  """Data parallelism (8, 1, 1) and data + FSDP + tensor parallelism (2, 2, 2), two steps
  each, against one device. The text decoder keeps the compiles short (the vision tower's
  sharded forward is the model's own test)."""
  assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
  batch = _batch(rows=8, images=False)
  single, want = _run(_model("tiny-text"), batch)
  for shape in ((8, 1, 1), (2, 2, 2)):
    sharded, got = _run(_model("tiny-text"), batch, mesh=parallel.make_mesh(shape))
    for w, g in zip(want, got):
      for key in w:
        np.testing.assert_allclose(g[key], w[key], rtol=2e-5, err_msg=f"{shape} {key}")
    _close_params(single, sharded)
    leaf = sharded.params["language_model"]["layers"][0]["mlp"]["up_proj"]["kernel"][...]
    assert len(leaf.sharding.device_set) == 8
    assert leaf.sharding.is_fully_replicated == (shape == (8, 1, 1))


def test_gradient_accumulation_equals_the_whole_batch():
  batch = _batch(images=False)
  whole, want = _run(_model("tiny-text"), batch)
  accumulated, got = _run(_model("tiny-text"), batch, accum=4)
  for w, g in zip(want, got):
    for key in ("loss", "accuracy", "grad_norm", "loss_tokens"):
      np.testing.assert_allclose(g[key], w[key], rtol=2e-5, err_msg=key)
  _close_params(whole, accumulated)


def _close_params(a, b):
  # Adam divides by sqrt(v): a parameter whose gradient is ~0 moves by up to ~lr on the
  # last bits of its gradient, so compare at a small fraction of one step's size (lr 1e-3).
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=2e-5, rtol=0)


def test_frozen_parameters_are_bit_identical_after_training():
  model = _model("tiny")
  before = {k: np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(
      nnx.state(model, nnx.Param))}
  patterns = ("vision_model", "multi_modal_projector")
  state, history = _run(model, _batch(), steps=3, freeze=patterns)
  assert history[-1]["loss"] < history[0]["loss"]
  frozen = {jax.tree_util.keystr(p): np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(state.frozen)}
  trained = {jax.tree_util.keystr(p): np.asarray(v)
             for p, v in jax.tree_util.tree_leaves_with_path(state.params)}
  assert frozen and all("vision_model" in k or "multi_modal_projector" in k for k in frozen)
  assert not any("vision_model" in k or "multi_modal_projector" in k for k in trained)
  originals = {jax.tree_util.keystr(p): v for p, v in before.items()}
  for key, value in frozen.items():
    assert np.array_equal(value, originals[key]), key
  changed = [k for k, v in trained.items() if not np.array_equal(v, originals[k])]
  assert len(changed) == len(trained)
  # The optimizer holds no moments for frozen parameters.
  assert sum(x.size for x in jax.tree.leaves(state.opt_state)) < 3 * sum(
      x.size for x in before.values())


def test_freeze_pattern_matching_nothing_is_an_error():
  with pytest.raises(ValueError, match="match no parameter"):
    state_lib.split_model(_model("tiny-text"), ["vision_model"])


def test_schedule_matches_transformers_cosine_with_warmup():
  torch = pytest.importorskip("torch")
  from transformers import get_cosine_schedule_with_warmup

  total, config = 200, _optim(lr=2e-5, warmup_ratio=0.03)
  param = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.AdamW([param], lr=config.lr)
  scheduler = get_cosine_schedule_with_warmup(opt, optim.warmup_steps(0.03, total), total)
  ours = optim.schedule(config, total)
  for step in range(total):
    np.testing.assert_allclose(float(ours(step)), opt.param_groups[0]["lr"], rtol=1e-5,
                               atol=1e-12, err_msg=f"step {step}")
    opt.step()
    scheduler.step()


def test_adamw_and_clipping_match_torch():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  start = rng.normal(size=(6, 5)).astype(np.float32)
  grads = [rng.normal(size=(6, 5)).astype(np.float32) * 3 for _ in range(5)]
  config = _optim(lr=1e-2, warmup_ratio=0.0, schedule="constant", weight_decay=0.1)
  tx = optim.optimizer(config, 5)
  params = {"w": jnp.asarray(start)}
  opt_state = tx.init(params)
  param = torch.nn.Parameter(torch.tensor(start))
  opt = torch.optim.AdamW([param], lr=1e-2, betas=(0.9, 0.98), eps=1e-7, weight_decay=0.1)
  for g in grads:
    updates, opt_state = tx.update({"w": jnp.asarray(g)}, opt_state, params)
    params = jax.tree.map(jnp.add, params, updates)
    param.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_([param], 1.0)
    opt.step()
  np.testing.assert_allclose(np.asarray(params["w"]), param.detach().numpy(), rtol=1e-5,
                             atol=1e-6)
