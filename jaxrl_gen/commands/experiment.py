"""`jaxrl-gen experiment`: the paper's SFT-vs-RL generalization experiment, end to end.

    jaxrl-gen experiment --config=configs/gp_mini.py --workdir=runs/gp_mini   # the main job
    jaxrl-gen experiment --config=configs/gp.py:l,tiny --workdir=runs/gp_l_experiment

(Pre-training on a rule family ->) SFT warm-up -> two branches at equal training FLOPs (more
SFT; PPO) -> ID and OOD evaluation along both -> `<workdir>/generalization.png` (success
against FLOPs, Fig. 5/6's shape), `probes.png`, `summary.json` and `summary.md`.
`config.experiment.*` sets the phases (`jaxrl_gen.config_lib.experiment_config`); every phase
resumes from `--workdir`, and compiled steps are cached in `<workdir>/compile_cache`.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags, logging

from jaxrl_gen import config_lib


def main(config, workdir: str | None):
  from jaxrl_gen import experiment  # noqa: PLC0415  (imports JAX)

  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  workdir = workdir or os.path.join("runs", f"{config.task}_{config.variant}_experiment")
  try:
    for mode in ("sft", "rl"):
      config_lib.validate(experiment.branch_config(config, mode))
    for branch in experiment.GRPO_BRANCHES:
      if branch in config.experiment.branches.split(","):
        config_lib.validate(experiment.grpo_branch_config(config, branch, "", 1, 0))
  except (config_lib.ConfigError, ValueError) as e:
    print(f"jaxrl-gen experiment: {e}", file=sys.stderr)
    sys.exit(2)
  if not flags.FLAGS.compile_cache:  # phases and reruns compile the same steps
    from jaxrl_gen import main as cli  # noqa: PLC0415

    cli.enable_compile_cache(os.path.join(workdir, "compile_cache"))
  from jaxrl_gen.models.hf_config import CheckpointError  # noqa: PLC0415
  from jaxrl_gen.train.run import RunError  # noqa: PLC0415

  try:
    summary = experiment.run_experiment(config, workdir,
                                        allow_changes=flags.FLAGS.allow_config_changes)
  except (RunError, CheckpointError) as e:
    print(f"jaxrl-gen experiment: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps(summary, indent=2))
