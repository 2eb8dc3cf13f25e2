"""The jitted steps of SFT and RL (and the sampler's program), built from a config and a mesh.

    built = steps.sft(config, mesh)              # the SFT step and its held-out evaluation
    state, metrics = built["sft_step"](state, batch)   # run on real arrays, under the mesh ...
    built["sft_step"].lower().compile()          # ... or compiled for the abstract inputs

Each builder returns the run's `Built`: the model config ('auto' dtype resolved against the
mesh's platform), the graphdef, the optimizer, the train state's shardings, and one `Step`
per jitted function. A `Step` holds the function (`jax.jit` with explicit in/out shardings
from the logical-axis rules), the mesh it is traced under (`jax.set_mesh`, so the model's
activation constraints take effect) and abstract arguments (ShapeDtypeStructs) of the
config's shapes; the trainers call the same functions on real arrays, and `jaxrl-gen aot`
compiles them for a TPU topology from any machine. `Step.flops` is the paper's model count
of one call: 6 N D with gradients, 2 N D without (D: the tokens it processes).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl_gen import parallel
from jaxrl_gen.data import pipeline
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.models.config import ModelConfig
from jaxrl_gen.models.inputs import IMAGE_KEYS
from jaxrl_gen.sampling import api as sampling_api
from jaxrl_gen.sampling import inputs as sampling_inputs
from jaxrl_gen.train import learner, optim, ppo
from jaxrl_gen.train import sft as sft_lib
from jaxrl_gen.train.batch import RolloutBatch
from jaxrl_gen.train import state as state_lib


@dataclasses.dataclass(frozen=True)
class Step:
  """A jitted function, the mesh it runs under, and abstract arguments of the config's shapes."""
  name: str
  fn: Callable
  mesh: Mesh
  args: tuple
  flops: float  # model FLOPs of one call on `args` (6ND with gradients, 2ND without)
  tokens: int   # the tokens D of one call

  def __call__(self, *args):
    with jax.set_mesh(self.mesh):
      return self.fn(*args)

  def lower(self) -> jax.stages.Lowered:
    with jax.set_mesh(self.mesh):
      return self.fn.lower(*self.args)


@dataclasses.dataclass(frozen=True)
class Built:
  """What a trainer needs of its steps: the shapes they were built for and the steps."""
  model_config: ModelConfig
  graphdef: nnx.GraphDef
  tx: Any
  shardings: state_lib.TrainState
  steps: dict[str, Step]

  def __getitem__(self, name: str) -> Step:
    return self.steps[name]


def model_config(config, mesh: Mesh) -> ModelConfig:
  """The config's model shapes, 'auto' dtype resolved against the mesh's platform."""
  return presets.from_config(config.model, config.mesh, parallel.platform(mesh))


def has_images(config, mc: ModelConfig) -> bool:
  """Whether the task's observations carry an image the model reads (GP-VL, V-IRL-VL)."""
  return mc.vision is not None and not config.env.language_only


def processes(mesh: Mesh) -> int:
  """How many host processes the mesh's devices span (a topology's, for `jaxrl-gen aot`)."""
  return len({d.process_index for d in mesh.devices.flat})


def rollout_temperature(config) -> float:
  """The rollouts' sampling temperature, which their log-probs and PPO's ratios are taken at."""
  value = config.ppo.rollout_temperature
  return float(config.sampling.temperature if value is None else value)


def _replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def _abstract_state(make: Callable[[], nnx.Module], tx, *, seed: int, freeze):
  """(graphdef, abstract TrainState) of training `make()` with `tx`: shapes, no memory."""
  graphdef = state_lib.split_model(nnx.eval_shape(make), freeze)[0]
  state = jax.eval_shape(lambda: state_lib.create(make(), tx, seed=seed, freeze=freeze)[1])
  return graphdef, state


def _placed(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def _key(mesh: Mesh) -> jax.ShapeDtypeStruct:
  key = jax.eval_shape(lambda: jax.random.key(0))
  return jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=_replicated(mesh))


def _arrays(shapes: dict[str, tuple[tuple[int, ...], Any]]) -> dict[str, jax.ShapeDtypeStruct]:
  return {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in shapes.items()}


def _row_shardings(mesh: Mesh, rules, keys, axes: Callable[[str], tuple]) -> dict:
  return {k: NamedSharding(mesh, parallel.logical_to_spec(axes(k), rules)) for k in keys}


def _image_shapes(mc: ModelConfig, rows: int, length: int, pixel_dtype) -> dict:
  v = mc.vision
  tiles = v.max_num_tiles
  return {"pixel_values": ((rows, 1, tiles, v.num_channels, v.image_size, v.image_size),
                           pixel_dtype),
          "aspect_ratio_ids": ((rows, 1), np.int32),
          "aspect_ratio_mask": ((rows, 1, tiles), np.int32),
          "cross_attention_mask": ((rows, length, 1, tiles), np.int32)}


# --- SFT ---------------------------------------------------------------------------------------


def sft(config, mesh: Mesh, mc: ModelConfig | None = None, *, images: bool | None = None
        ) -> Built:
  """The SFT step (`sft_step`, the state donated) and the held-out loss (`sft_eval`) on
  batches of `sft.batch_size` x `data.max_length` (one image a row with `images`)."""
  mc = mc or model_config(config, mesh)
  images = has_images(config, mc) if images is None else images
  tx = optim.optimizer(config.optim, config.sft.steps)
  freeze = tuple(config.sft.freeze)
  graphdef, state = _abstract_state(lambda: mllama.Model(mc, rngs=nnx.Rngs(config.seed)), tx,
                                    seed=config.seed, freeze=freeze)
  shardings = state_lib.shardings(state, mesh, mc.rules, tx)
  keys = pipeline.TEXT_KEYS + (IMAGE_KEYS if images else ())
  batch_shardings = _row_shardings(mesh, mc.rules, keys, sft_lib.BATCH_AXES.get)
  chunk = config.sft.loss_chunk
  train = jax.jit(functools.partial(sft_lib.sft_step, graphdef=graphdef, tx=tx,
                                    accum=config.sft.accum, loss_chunk=chunk),
                  in_shardings=(shardings, batch_shardings),
                  out_shardings=(shardings, _replicated(mesh)), donate_argnums=0)
  evaluate = jax.jit(functools.partial(sft_lib.eval_step, graphdef=graphdef, loss_chunk=chunk),
                     in_shardings=(shardings, batch_shardings), out_shardings=_replicated(mesh))

  rows, length = config.sft.batch_size, config.data.max_length
  shapes = {k: ((rows, length), np.int32) for k in pipeline.TEXT_KEYS}
  if images:
    shapes.update(_image_shapes(mc, rows, length, np.float32))
  args = (_placed(state, shardings), _placed(_arrays(shapes), batch_shardings))
  n, tokens = mllama.param_count(mc), rows * length
  return Built(mc, graphdef, tx, shardings, {
      "sft_step": Step("sft_step", train, mesh, args, 6.0 * n * tokens, tokens),
      "sft_eval": Step("sft_eval", evaluate, mesh, args, 2.0 * n * tokens, tokens)})


# --- RL ----------------------------------------------------------------------------------------


def _up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def update_shards(mesh: Mesh, rules, cfg: ppo.PPOConfig, rows: int) -> int:
  """The data shards PPO micro-batches are drawn evenly from: all of them when they divide the
  micro-batch, else 1 (then a micro-batch gathers across shards)."""
  shards = parallel.batch_shards(mesh, rules)
  micro = rows // (cfg.minibatches * cfg.grad_accum)
  return shards if micro and micro % shards == 0 else 1


def rl(config, mesh: Mesh, mc: ModelConfig | None = None, *, images: bool | None = None,
       prompt_length: int = 512, output_length: int | None = None) -> Built:
  """The RL run's steps: `rescore` (the no-grad scoring pass over `ppo.rescore_chunk` rows a
  process), `ppo_update` (the update with `ppo.loss`, the state donated, `ppo.num_steps` rows a
  process) and `sample` (the sampler's prefill + decode program for `sample_rows` prompts a
  process). PPO trains an `ActorCritic`, the GRPO family (a group `ppo.advantage`) a bare
  `Policy`. Abstract batches are `prompt_length` + `output_length` (default
  `sampling.max_new_tokens`) tokens, each rounded up to `ppo.length_multiple`; images (one a
  row) are stored in the compute dtype."""
  mc = mc or model_config(config, mesh)
  images = has_images(config, mc) if images is None else images
  rules, hosts = mc.rules, processes(mesh)
  cfg = ppo.PPOConfig.from_config(config.ppo)
  critic = cfg.advantage == "gae"
  # Frozen parameters are split out of the trained ones (no gradient, no optimizer state).
  tx = ppo.make_optimizer(dataclasses.replace(cfg, freeze=()))
  value_hidden = tuple(config.ppo.value_hidden)

  def make():
    model = mllama.Model(mc, rngs=nnx.Rngs(config.seed))
    return learner.actor_critic(model, value_hidden, seed=config.seed) if critic else (
        learner.Policy(model))

  graphdef, state = _abstract_state(make, tx, seed=config.seed, freeze=cfg.freeze)
  shardings = state_lib.shardings(state, mesh, rules, tx)
  placed = _placed(state, shardings)
  param_parts = (shardings.params, shardings.frozen, shardings.rest)
  rows_out = NamedSharding(mesh, parallel.logical_to_spec(("batch",), rules))
  temperature = rollout_temperature(config)

  # Abstract batches: every process's rows, lengths as the rollout pads them.
  multiple = config.ppo.length_multiple
  p = _up(prompt_length, multiple)
  out = _up(output_length or config.sampling.max_new_tokens, multiple)

  def batch(rows: int, fields) -> tuple[RolloutBatch, RolloutBatch]:
    """(abstract batch, its shardings)."""
    image_shapes = functools.partial(_image_shapes, mc, pixel_dtype=np.dtype(mc.dtype))
    abstract = RolloutBatch.abstract(fields, rows=rows, prompt=p, output=out,
                                     image_shapes=image_shapes if images else None)
    sharding = abstract.shardings(mesh, rules)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        abstract, sharding), sharding

  n = mllama.param_count(mc)
  steps = {}
  shards = parallel.batch_shards(mesh, rules)

  rows = _up(config.ppo.rescore_chunk * hosts, shards)
  abstract, sharding = batch(rows, learner.rescore_fields(images))
  rescore = jax.jit(functools.partial(learner.rescore, graphdef, temperature=temperature,
                                      thought_coef=cfg.thought_coef),
                    in_shardings=(*param_parts, sharding), out_shardings=rows_out)
  steps["rescore"] = Step("rescore", rescore, mesh,
                          (placed.params, placed.frozen, placed.rest, abstract),
                          2.0 * n * rows * (p + out), rows * (p + out))

  fields = learner.update_fields(images, critic=critic,
                                 kl=cfg.kl_coef > 0 and not cfg.kl_in_reward,
                                 token_level=cfg.loss != "turn_ppo")
  rows = config.ppo.num_steps * hosts
  abstract, sharding = batch(rows, fields)
  # The GRPO family pads its rows to a multiple of the micro-batches x data shards.
  update_shards_ = shards if not critic else update_shards(mesh, rules, cfg, rows)
  update = jax.jit(functools.partial(learner.update, graphdef=graphdef, tx=tx, cfg=cfg,
                                     temperature=temperature, shards=update_shards_),
                   in_shardings=(shardings, sharding, _replicated(mesh)),
                   out_shardings=(shardings, _replicated(mesh)), donate_argnums=0)
  tokens = rows * (p + out) * cfg.ppo_epochs
  steps["ppo_update"] = Step("ppo_update", update, mesh, (placed, abstract, _key(mesh)),
                             6.0 * n * tokens, tokens)

  steps["sample"] = sampler(config, mesh, mc, rows=sample_rows(config) * hosts,
                            prompt_length=prompt_length, images=images)
  return Built(mc, graphdef, tx, shardings, steps)


def sample_rows(config) -> int:
  """Rows a process decodes in one rollout generate call: `ppo.num_envs`, at most
  `sampling.max_rows` (`ModelPolicy` answers the rest in further calls)."""
  return min(config.ppo.num_envs, config.sampling.max_rows or config.ppo.num_envs)


def sampler(config, mesh: Mesh, mc: ModelConfig, *, rows: int, prompt_length: int,
            images: bool) -> Step:
  """The sampler's program (prefill + decode loop) for `rows` prompts of `prompt_length`
  tokens and `sampling.max_new_tokens` new ones, bucketed as `sampling.generate` buckets."""
  s = config.sampling
  graphdef, state = mllama.abstract(mc)
  static = sampling_api.static_settings(
      max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
      cache_dtype=None if s.cache_dtype == "auto" else s.cache_dtype,
      decode_layers=s.decode_layers, platform=parallel.platform(mesh))
  rows = sampling_inputs.bucket(rows, tuple(s.batch_buckets), parallel.batch_shards(mesh,
                                                                                  mc.rules))
  length = sampling_inputs.bucket(prompt_length, tuple(s.prompt_buckets))
  batch = sampling_api.abstract_batch(mc, rows, length, images=1 if images else 0)
  shapes = {k: v.shape for k, v in batch.items()}
  fn = sampling_api.program(graphdef, state, mc.rules, static, shapes, mesh)
  shardings = parallel.state_shardings(state, mesh, mc.rules)
  batch = _placed(batch, sampling_api.batch_shardings(shapes, mesh, mc.rules))
  budget = jax.ShapeDtypeStruct((), np.int32, sharding=_replicated(mesh))
  tokens = rows * (length + s.max_new_tokens)
  return Step("sample", fn, mesh, (_placed(state, shardings), batch, budget, _key(mesh)),
              2.0 * mllama.param_count(mc) * tokens, tokens)
