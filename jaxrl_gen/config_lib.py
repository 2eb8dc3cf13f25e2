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

# Model presets (the shapes live in `jaxrl_gen.models.presets`).
PRESETS = (
    "tiny",
    "small",
    "llama-3.2-1b",
    "llama-3.2-3b",
    "llama-3.1-8b",
    "llama-3.2-11b-vision",
    "llama-3.2-90b-vision",
)
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
  """The `config.model` section every task config shares."""
  return ml_collections.ConfigDict({"preset": preset})


def ppo_config(*, num_updates: int, lr: float) -> ml_collections.ConfigDict:
  """The `config.ppo` section (multi-turn PPO, `reference.md` §4.6, `decisions.md` rows 5-8);
  the task configs document each key and pass the per-task numbers."""
  config = ml_collections.ConfigDict()
  config.num_updates = num_updates
  config.num_steps = 256
  config.temperature = 0.2
  config.max_new_tokens = 512
  config.gamma = 0.9
  config.gae_lambda = 0.95
  config.bootstrap_truncated = False
  config.clip = 0.1
  config.value_clip = 0.1
  config.value_coef = 0.5
  config.entropy_coef = 0.0
  config.kl_coef = 0.0
  config.thought_coef = 0.5
  config.action_span = "field"
  config.ratio_rule = True
  config.ppo_epochs = 4
  config.minibatches = 2
  config.grad_accum = 128
  config.lr = lr
  config.end_lr = 1e-9
  config.adam_eps = 1e-7
  config.max_grad_norm = ml_collections.config_dict.placeholder(float)
  config.value_hidden = (1024, 512)
  config.freeze = ()
  return config


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


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Cross-field checks, run before anything is compiled. Raises `ConfigError`."""
  from jaxrl_gen import envs  # configs import this module; keep the import graph one-way

  _one_of(config, "mode", IMPLEMENTED_MODES)
  _one_of(config, "model.preset", PRESETS)
  _check(config.seed >= 0, f"config.seed={config.seed}: must be non-negative")
  if "ppo" in config:
    _one_of(config, "ppo.action_span", ("field", "legacy"))
  try:
    envs.params_from_config(config)  # the env's own dataclass checks its fields
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.env: {e}") from None
  return config
