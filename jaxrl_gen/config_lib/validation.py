"""`validate`: the cross-field checks run before anything is compiled, a `validate_*` per
section. JAX and `jaxrl_gen.envs` are imported inside the functions: config files import this
package, so it stays JAX-free and the import graph one-way.
"""

from __future__ import annotations

from typing import Iterable

import ml_collections

from jaxrl_gen.config_lib.grammar import IMPLEMENTED_MODES, PRESETS, RL_MODES, ConfigError
from jaxrl_gen.models import config as model_config_lib  # JAX-free
from jaxrl_gen.models import presets as model_presets  # JAX-free
from jaxrl_gen.sampling import inputs as sampling_inputs  # JAX-free

# The values `model.dtype` takes: 'auto' (`model_config`) or a dtype of the model.
MODEL_DTYPES = ("auto",) + model_config_lib.DTYPES


def _check(ok: bool, message: str):
  if not ok:
    raise ConfigError(message)


def _one_of(config, key: str, allowed: Iterable):
  allowed = tuple(allowed)
  value = config
  for part in key.split("."):
    value = value[part]
  _check(value in allowed, f"config.{key}={value!r}: must be one of {allowed}")


def validate_model(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """The model section, and the mesh against the devices and every parameter's shape."""
  _one_of(config, "model.preset", PRESETS)
  _one_of(config, "model.dtype", MODEL_DTYPES)
  _one_of(config, "model.param_dtype", model_config_lib.DTYPES)
  _one_of(config, "model.remat", model_config_lib.REMAT_POLICIES)
  if "mesh" not in config:
    return
  import jax  # noqa: PLC0415  (config files must not import JAX; validation runs later)

  from jaxrl_gen import parallel  # noqa: PLC0415
  from jaxrl_gen.models import mllama  # noqa: PLC0415

  num_devices = jax.device_count() if num_devices is None else num_devices
  try:
    shape = parallel.mesh_shape(config.mesh.shape, num_devices)
    parallel.check_rules(config.mesh.rules)
    model = model_presets.from_config(config.model, config.mesh)
    parallel.check_state(mllama.abstract(model)[1], shape, model.rules)
  except ValueError as e:
    raise ConfigError(f"config.mesh: {e}") from None


def validate_sampling(config: ml_collections.ConfigDict) -> None:
  """The sampling section's ranges."""
  s = config.sampling
  _check(s.temperature >= 0, f"config.sampling.temperature={s.temperature}: must be >= 0")
  _check(0 < s.top_p <= 1, f"config.sampling.top_p={s.top_p}: must be in (0, 1]")
  _check(s.top_k >= 0, f"config.sampling.top_k={s.top_k}: must be >= 0 (0 = off)")
  _check(s.max_rows >= 0, f"config.sampling.max_rows={s.max_rows}: must be >= 0 (0 = all rows"
         " in one call)")
  _check(s.max_new_tokens >= 1,
         f"config.sampling.max_new_tokens={s.max_new_tokens}: must be positive")
  for name in ("prompt_buckets", "batch_buckets"):
    b = tuple(s[name])
    _check(bool(b) and b[0] >= 1 and all(x < y for x, y in zip(b, b[1:])),
           f"config.sampling.{name}={b}: must be strictly increasing positive sizes")
  _one_of(config, "sampling.cache_dtype", ("auto",) + model_config_lib.DTYPES)
  _one_of(config, "sampling.decode_layers", sampling_inputs.DECODE_LAYERS)


def validate_train(config: ml_collections.ConfigDict, process_count: int = 1,
                   num_devices: int | None = None, files: bool = True) -> None:
  """The training sections: sizes that divide, choices that exist, patterns that compile."""
  import re  # noqa: PLC0415

  sft, data, optim = config.sft, config.data, config.optim
  _one_of(config, "data.source", ("env", "llava"))
  if "rules" in config.data:  # GP's pre-training family (`envs.general_points.rules`)
    from jaxrl_gen.envs.general_points import rules  # noqa: PLC0415  (JAX-free)

    _one_of(config, "data.rules", rules.RULE_SETS)
  _one_of(config, "optim.schedule", ("cosine", "constant"))
  _one_of(config, "optim.moment_dtype", ("float32", "bfloat16"))
  for key, value, low in (("sft.steps", sft.steps, 1), ("sft.batch_size", sft.batch_size, 1),
                          ("sft.accum", sft.accum, 1), ("data.max_length", data.max_length, 2),
                          ("sft.loss_chunk", sft.loss_chunk, 0),
                          ("data.train_size", data.train_size, 1),
                          ("data.eval_size", data.eval_size, 0),
                          ("checkpoint.every", config.checkpoint.every, 1),
                          ("checkpoint.keep", config.checkpoint.keep, 1),
                          ("log.every", config.log.every, 1),
                          ("sft.eval_episodes", sft.eval_episodes, 0)):
    _check(value >= low, f"config.{key}={value}: must be >= {low}")
  _check(sft.batch_size % process_count == 0,
         f"config.sft.batch_size={sft.batch_size}: not divisible by the {process_count} processes")
  _check((sft.batch_size // process_count) % sft.accum == 0,
         f"config.sft.batch_size={sft.batch_size}: each process's share does not split into "
         f"config.sft.accum={sft.accum} micro-batches")
  if num_devices is not None:
    from jaxrl_gen import parallel  # noqa: PLC0415

    data_axis, fsdp_axis, _ = parallel.mesh_shape(config.mesh.shape, num_devices)
    shards, micro = data_axis * fsdp_axis, sft.batch_size // sft.accum
    _check(micro % shards == 0,
           f"config.sft.batch_size={sft.batch_size}: its micro-batches of {micro} rows do not "
           f"split over the {shards} data shards of config.mesh.shape={tuple(config.mesh.shape)}")
  _check(0.0 <= optim.warmup_ratio < 1.0,
         f"config.optim.warmup_ratio={optim.warmup_ratio}: must be in [0, 1)")
  _check(optim.lr > 0 and optim.eps > 0 and 0 <= optim.b1 < 1 and 0 <= optim.b2 < 1,
         "config.optim: lr and eps must be > 0, b1 and b2 in [0, 1)")
  _check(optim.max_grad_norm is None or optim.max_grad_norm > 0,
         f"config.optim.max_grad_norm={optim.max_grad_norm}: must be > 0 or None")
  for pattern in sft.freeze:
    try:
      re.compile(pattern)
    except re.error as e:
      raise ConfigError(f"config.sft.freeze: {pattern!r} is not a regular expression ({e})")
  if data.source == "llava":
    _check(bool(data.llava_json), "config.data.source='llava' needs config.data.llava_json")
  if files and not config.text.tokenizer and not sft.init:
    vocab = model_presets.get(config.model.preset).text.vocab_size
    _check(vocab == 2048, f"config.text.tokenizer='' (the embedded tokenizer, 2048 ids) does not "
           f"fit preset {config.model.preset!r} (vocab {vocab}): set config.text.tokenizer or "
           "config.sft.init to a checkpoint directory")


def validate_ppo(config: ml_collections.ConfigDict) -> None:
  """The RL run's sizes: turns of whole batches, buffers that split into micro-batches."""
  p = config.ppo
  for key, low in (("num_updates", 1), ("num_steps", 1), ("num_envs", 1), ("eval_every", 0),
                   ("rescore_chunk", 1), ("length_multiple", 1), ("ppo_epochs", 1),
                   ("minibatches", 1), ("grad_accum", 1)):
    _check(isinstance(p[key], int) and p[key] >= low,
           f"config.ppo.{key}={p[key]!r}: must be an integer >= {low}")
  _check(p.num_steps % p.num_envs == 0,
         f"config.ppo.num_steps={p.num_steps} is not a whole number of turns of "
         f"config.ppo.num_envs={p.num_envs} episodes")
  # The GRPO family pads its rows to a multiple of the micro-batches.
  _check(config.mode == "grpo" or p.num_steps % (p.minibatches * p.grad_accum) == 0,
         f"config.ppo.num_steps={p.num_steps} does not split into ppo.minibatches="
         f"{p.minibatches} x ppo.grad_accum={p.grad_accum} micro-batches")
  _one_of(config, "ppo.action_span", ("field", "legacy"))
  _check(p.rollout_temperature is None or p.rollout_temperature > 0,
         f"config.ppo.rollout_temperature={p.rollout_temperature}: must be > 0 (PPO needs the"
         " sampled tokens' log-probs) or None")


def validate_grpo(config: ml_collections.ConfigDict) -> None:
  """The GRPO family's settings: groups of two or more, a group estimator, and unsupervised
  rewards only where no verifier feedback reaches the episode."""
  g, p = config.grpo, config.ppo
  _check(g.groups >= 1, f"config.grpo.groups={g.groups}: must be >= 1")
  _check(g.group_size >= 2, f"config.grpo.group_size={g.group_size}: a group needs >= 2 samples")
  _one_of(config, "grpo.reward", ("verifier", "majority", "self_judge"))
  _one_of(config, "grpo.judge_advantage", ("centred", "log_softmax"))
  _check(p.advantage in ("grpo", "drgrpo", "rloo"),
         f"config.ppo.advantage={p.advantage!r}: mode grpo needs a group estimator "
         "(grpo, drgrpo, rloo)")
  _check(g.judge_max_new_tokens >= 1,
         f"config.grpo.judge_max_new_tokens={g.judge_max_new_tokens}: must be >= 1")
  if g.reward != "verifier":
    from jaxrl_gen import envs  # noqa: PLC0415  (configs import this module; see `validate`)

    single = envs.task(config.task).single_attempt(config.env)
    _check(single, f"config.grpo.reward={g.reward!r} reads no verifier reward, but the "
           "episodes show the verifier's feedback: use single-attempt episodes "
           "(--config.env.verification=False; GP only, V-IRL routes are multi-step)")


def _check_training_state_fits(config: ml_collections.ConfigDict) -> None:
  """On accelerators of known memory: a mesh that leaves more parameters, gradients and Adam
  moments on each chip than it holds (e.g. a replicating one for 11B) is refused here, not
  after minutes of loading (`aot.check_mesh`)."""
  from jaxrl_gen import aot, parallel  # noqa: PLC0415

  try:
    aot.check_mesh(config, parallel.make_mesh(config.mesh.shape))
  except aot.DoesNotFit as e:
    raise ConfigError(f"config.mesh: {e}") from None


def validate(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
             process_count: int | None = None, files: bool = True
             ) -> ml_collections.ConfigDict:
  """Cross-field checks, run before anything is compiled. Raises `ConfigError`. The mesh is
  checked against `num_devices` over `process_count` hosts (default: this run's); `files`
  False skips what only a real run reads (the tokenizer)."""
  from jaxrl_gen import envs  # configs import this module; keep the import graph one-way

  _one_of(config, "mode", IMPLEMENTED_MODES)
  validate_model(config, num_devices)
  if "sampling" in config:
    validate_sampling(config)
  if config.mode == "sft":
    import jax  # noqa: PLC0415

    validate_train(config, process_count or jax.process_count(),
                   num_devices or jax.device_count(), files)
  if config.mode in ("sft",) + RL_MODES and num_devices is None:
    _check_training_state_fits(config)
  _check(config.seed >= 0, f"config.seed={config.seed}: must be non-negative")
  if "ppo" in config:
    validate_ppo(config)
  if config.mode == "grpo":
    validate_grpo(config)
  try:
    envs.params_from_config(config)  # the env's own dataclass checks its fields
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.env: {e}") from None
  return config
