"""Helpers the experiment configs (`configs/*.py`) share: the `arg` grammar, locking,
closest-key suggestions and the cross-field `validate`.

A config file's `get_config(arg)` takes a comma list such as `"l,rl,tiny"`: each word is a
variant, a mode or a model preset, in any order. Everything else is set with
`--config.a.b=value`; the returned config is locked, so a misspelt key is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Iterable

import ml_collections

from jaxrl_gen.models import config as model_config_lib  # JAX-free
from jaxrl_gen.models import presets as model_presets  # JAX-free

# Model presets: `jaxrl_gen.models.presets` is the source of truth.
PRESETS = model_presets.NAMES
MODEL_DTYPES = ("auto",) + model_config_lib.DTYPES
# Modes a config can be built for, and the subset that this version implements.
MODES = ("play", "sft", "rl", "grpo", "eval")
IMPLEMENTED_MODES = ("play",)


class ConfigError(ValueError):
  """A config that cannot run; the message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class Choice:
  variant: str
  mode: str
  preset: str


def parse_arg(arg: str | None, *, variants: Iterable[str], default_variant: str,
              default_mode: str = "play", default_preset: str = "tiny") -> Choice:
  """Splits `get_config`'s argument into (variant, mode, preset), rejecting anything else."""
  variants = tuple(variants)
  picked = {"variant": default_variant, "mode": default_mode, "preset": default_preset}
  seen = set()
  for word in (w.strip().lower() for w in (arg or "").split(",") if w.strip()):
    if word in variants:
      slot = "variant"
    elif word in MODES:
      slot = "mode"
    elif word in PRESETS:
      slot = "preset"
    else:
      hint = difflib.get_close_matches(word, variants + MODES + PRESETS, n=1)
      raise ConfigError(
          f"unknown word {word!r} in config argument {arg!r}"
          + (f" (did you mean {hint[0]!r}?)" if hint else "")
          + f"; variants: {', '.join(variants)}; modes: {', '.join(MODES)};"
          f" presets: {', '.join(PRESETS)}")
    if slot in seen:
      raise ConfigError(f"config argument {arg!r} names two {slot}s")
    seen.add(slot)
    picked[slot] = word
  if picked["mode"] not in IMPLEMENTED_MODES:
    raise ConfigError(
        f"mode {picked['mode']!r} is not implemented in this version of jaxrl_gen;"
        f" available: {', '.join(IMPLEMENTED_MODES)}")
  return Choice(**picked)


def model_config(preset: str) -> ml_collections.ConfigDict:
  """The `config.model` section every task config shares.

      model.preset       the shape (`jaxrl_gen.models.presets`).
      model.dtype        compute dtype: 'auto' (bfloat16 on TPU/GPU, float32 on CPU) |
                         'float32' | 'bfloat16' | 'float16'.
      model.param_dtype  parameter (master weight) dtype: 'float32' (default) | 'bfloat16'.
      model.remat        rematerialisation of each scanned block: 'none' | 'full' | 'dots' |
                         'dots_no_batch' | 'save_qkv' | 'save_attn_mlp'.
      model.scan_layers  True: lax.scan over repeated layers (fast compiles); False: unrolled.
  """
  return ml_collections.ConfigDict({
      "preset": preset,
      "dtype": "auto",
      "param_dtype": "float32",
      "remat": "none",
      "scan_layers": True,
  })


def mesh_config() -> ml_collections.ConfigDict:
  """The `config.mesh` section: the device mesh and the logical-axis sharding rules.

      mesh.shape  sizes of the ('data', 'fsdp', 'tensor') axes; one -1 takes the remaining
                  devices. (-1, 1, 1): pure data parallelism; (1, -1, 1): FSDP.
      mesh.rules  (logical axis, mesh axes) pairs: parameters and activations name their
                  dimensions ('embed', 'heads', 'kv_heads', 'mlp', 'vocab', 'batch', ...);
                  a name maps to None (replicated), a mesh axis, or a tuple of mesh axes.
  """
  return ml_collections.ConfigDict({
      "shape": (-1, 1, 1),
      "rules": model_config_lib.DEFAULT_RULES,
  })


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every leaf key as a dotted path."""
  keys = []
  for name, value in config.items():
    path = f"{prefix}{name}"
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(flat_keys(value, path + "."))
    else:
      keys.append(path)
  return keys


def closest_keys(config: ml_collections.ConfigDict, key: str, n: int = 3) -> list[str]:
  """The dotted keys of `config` nearest to `key` (for 'did you mean' messages)."""
  keys = flat_keys(config)
  close = difflib.get_close_matches(key, keys, n=n, cutoff=0.5)
  if not close:  # a misspelt leaf under the right section: compare the last component
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
    close = [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=n)]
  return close


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


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Cross-field checks, run before anything is compiled. Raises `ConfigError`."""
  from jaxrl_gen import envs  # configs import this module; keep the import graph one-way

  _one_of(config, "mode", IMPLEMENTED_MODES)
  validate_model(config)
  _check(config.seed >= 0, f"config.seed={config.seed}: must be non-negative")
  try:
    envs.params_from_config(config)  # the env's own dataclass checks its fields
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.env: {e}") from None
  return config
