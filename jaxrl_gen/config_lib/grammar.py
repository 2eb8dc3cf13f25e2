"""The `arg` grammar of a config file's `get_config(arg)`: the words it takes (variants, the
`MODES`, the model `PRESETS`), `parse_arg`, and `ConfigError`, what every config check raises.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Iterable

from jaxrl_gen.models import presets as model_presets  # JAX-free

# Model presets: `jaxrl_gen.models.presets` is the source of truth.
PRESETS = model_presets.NAMES
# Modes a config can be built for (all implemented), and those `run_rl` trains.
MODES = ("play", "sft", "rl", "grpo", "eval")
IMPLEMENTED_MODES = MODES
RL_MODES = ("rl", "grpo")
# Presets trained from random init on a CPU (the embedded 2048-id tokenizer fits them).
TOY_PRESETS = ("tiny", "tiny-text", "mini-vision", "small", "small-text")


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
