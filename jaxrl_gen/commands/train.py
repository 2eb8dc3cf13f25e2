"""`jaxrl-gen train`: train the model of a config, by its mode.

    jaxrl-gen train --config=configs/gp.py:l,sft,tiny --workdir=runs/gp_l_sft

mode 'sft': supervised fine-tuning on expert data (`jaxrl_gen.train.loop.run_sft`);
mode 'rl': multi-turn PPO against the environment (`jaxrl_gen.train.rl.run_rl`). A run
resumes from the latest checkpoint in `--workdir` automatically; rerunning a finished run
does nothing more. Each mode is one entry of `TRAINERS`.
"""

from __future__ import annotations

import importlib
import os

from absl import flags, logging

TRAINERS = {"sft": ("jaxrl_gen.train.loop", "run_sft"), "rl": ("jaxrl_gen.train.rl", "run_rl")}


def default_workdir(config) -> str:
  return os.path.join("runs", f"{config.task}_{config.variant}_{config.mode}")


def main(config, workdir: str | None):
  if config.mode not in TRAINERS:
    raise SystemExit(f"jaxrl-gen train: mode {config.mode!r} has no trainer; trainable modes: "
                     f"{', '.join(TRAINERS)}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  module, function = TRAINERS[config.mode]
  getattr(importlib.import_module(module), function)(config, workdir or default_workdir(config))
