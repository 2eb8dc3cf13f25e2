"""Helpers the experiment configs (`configs/*.py`) share: the `arg` grammar, locking,
closest-key suggestions and the cross-field `validate`.

A config file's `get_config(arg)` takes a comma list such as `"l,rl,tiny"`: each word is a
variant, a mode or a model preset, in any order. Everything else is set with
`--config.a.b=value`; the returned config is locked, so a misspelt key is an error.

    grammar     the `arg` words (MODES, PRESETS, TOY_PRESETS), `parse_arg`, `ConfigError`.
    sections    the shared sections' builders (`model_config`, ..., `sampling_config`), whose
                docstrings are their key tables, and the pod recipes (`POD_*`).
    validation  `validate` and its `validate_*` per section.
    keys        `flat_keys`, `closest_keys` and `describe` (`jaxrl-gen config`).

Every name is imported here: callers use `config_lib.X`. The package imports no JAX.
"""

from __future__ import annotations

from jaxrl_gen.config_lib.grammar import (IMPLEMENTED_MODES, MODES, PRESETS, RL_MODES,
                                          TOY_PRESETS, Choice, ConfigError, parse_arg)
from jaxrl_gen.config_lib.keys import closest_keys, describe, flat_keys
from jaxrl_gen.config_lib.sections import (POD_MESH, POD_PPO_GRAD_ACCUM, POD_REMAT,
                                           POD_SFT_ACCUM, eval_repeats, experiment_config,
                                           follows_seed, grpo_config, mesh_config,
                                           model_config, ppo_config, sampling_config, seed_of,
                                           text_config, train_config)
from jaxrl_gen.config_lib.validation import (MODEL_DTYPES, validate, validate_grpo,
                                             validate_model, validate_ppo, validate_sampling,
                                             validate_train)

__all__ = [
    "IMPLEMENTED_MODES", "MODES", "PRESETS", "RL_MODES", "TOY_PRESETS", "Choice", "ConfigError",
    "parse_arg",
    "closest_keys", "describe", "flat_keys",
    "POD_MESH", "POD_PPO_GRAD_ACCUM", "POD_REMAT", "POD_SFT_ACCUM", "eval_repeats",
    "experiment_config", "follows_seed", "grpo_config", "mesh_config", "model_config", "ppo_config",
    "sampling_config", "seed_of", "text_config", "train_config",
    "MODEL_DTYPES", "validate", "validate_grpo", "validate_model", "validate_ppo",
    "validate_sampling", "validate_train",
]
