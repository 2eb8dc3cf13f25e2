"""`jaxrl-gen train`: train the model of a config, by its mode.

    jaxrl-gen train --config=configs/gp.py:l,sft,tiny --workdir=runs/gp_l_sft

mode 'sft': supervised fine-tuning on expert data (`jaxrl_gen.train.loop.run_sft`);
mode 'rl': multi-turn PPO against the environment; mode 'grpo': the GRPO family (group
advantages, no critic; `config.grpo`), both `jaxrl_gen.train.rl.run_rl`. A run resumes from
the latest checkpoint in `--workdir` automatically; rerunning a finished run does nothing more.
Resuming with a changed config is refused (the changed keys named) unless the keys are ones a
resumed run may change (`jaxrl_gen.train.run.RESUMABLE`) or `--allow_config_changes` is given;
accepted changes are recorded in `<workdir>/config_changes.jsonl`. Each mode is one entry of
`TRAINERS`.
"""

from __future__ import annotations

import importlib
import os
import sys

from absl import flags, logging

TRAINERS = {"sft": ("jaxrl_gen.train.loop", "run_sft"), "rl": ("jaxrl_gen.train.rl", "run_rl"),
            "grpo": ("jaxrl_gen.train.rl", "run_rl")}



def default_workdir(config) -> str:
  return os.path.join("runs", f"{config.task}_{config.variant}_{config.mode}")


def main(config, workdir: str | None):
  from jaxrl_gen.models.hf_config import CheckpointError  # noqa: PLC0415
  from jaxrl_gen.train.run import RunError  # noqa: PLC0415  (imports JAX)

  if config.mode not in TRAINERS:
    raise SystemExit(f"jaxrl-gen train: mode {config.mode!r} has no trainer; trainable modes: "
                     f"{', '.join(TRAINERS)}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  module, function = TRAINERS[config.mode]
  try:
    getattr(importlib.import_module(module), function)(
        config, workdir or default_workdir(config),
        allow_changes=flags.FLAGS.allow_config_changes)
  except (RunError, CheckpointError) as e:
    print(f"jaxrl-gen: {e}", file=sys.stderr)
    sys.exit(2)
