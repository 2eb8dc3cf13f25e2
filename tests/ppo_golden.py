"""The PPO golden record, tests/data/ppo_tiny_golden.json: the tiny PPO run of `tiny_rl`
with a KL term and greedy rollouts, its metric records and per-parameter sums, and where it
came from.

    python tests/ppo_golden.py     # rewrite it, after a change meant to move PPO's numbers

`tests/test_rl.py::test_ppo_run_equals_its_golden_record` runs the same run and compares.
The rollouts are greedy (`sampling.temperature=0`) so that the record does not depend on the
machine: sampled tokens follow the sampler's uniforms past logits that another CPU computes
in another float order, and a sampled run drifts from there (`docs/generalization.md`: same
seed, other machine, other trajectory), while an argmax over a random-init model's logits
moves only at a tie. What is left, float order in the forward and backward passes, is within
the test's tolerance (rtol 1e-4). `origin` records the command, commit, JAX version and
machine that wrote the file.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
GOLDEN = HERE / "data" / "ppo_tiny_golden.json"
COMMAND = "python tests/ppo_golden.py"
CODE = ("jaxrl_gen", "configs/gp.py", "tests/tiny_rl.py", "tests/ppo_golden.py")


def config(repo_root: pathlib.Path = REPO_ROOT):
  """The golden run's config: tiny_rl's PPO run, a KL term, greedy rollouts."""
  sys.path.insert(0, str(HERE))
  import tiny_rl  # noqa: PLC0415

  config = tiny_rl.config(repo_root)
  with config.unlocked():
    config.ppo.kl_coef = 0.05
    config.sampling.temperature = 0.0
  return config


def run(workdir: str, repo_root: pathlib.Path = REPO_ROOT) -> dict:
  """{'records': the run's metrics.jsonl records without wall-clock times, 'param_sums':
  each parameter's sum}."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from jaxrl_gen import metrics  # noqa: PLC0415
  from jaxrl_gen.train import rl  # noqa: PLC0415

  state = rl.run_rl(config(repo_root), workdir)
  leaves = jax.tree.leaves(jax.device_get(state.params))
  records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {"records": [{k: v for k, v in r.items() if not k.startswith("time/")}
                      for r in records],
          "param_sums": [float(np.asarray(x, np.float64).sum()) for x in leaves]}


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next((line.split(":", 1)[1].strip() for line in f
                   if line.startswith("model name")), "")
  except OSError:
    return platform.processor()


def origin() -> dict:
  import jax  # noqa: PLC0415
  import jaxlib  # noqa: PLC0415

  def git(*args):
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True).stdout.strip()

  return {"command": COMMAND, "commit": git("rev-parse", "HEAD"),
          # the code the run goes through, changed and not committed at the time
          "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no",
                                          "--", *CODE)),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "machine": f"{platform.machine()} {_cpu_model()}".strip(),
          "cpus": os.cpu_count(), "date": datetime.date.today().isoformat()}


def main() -> int:
  # The suite's settings (tests/conftest.py): 8 simulated CPU devices, CPU only, offline.
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                      "--xla_force_host_platform_device_count=8"]).strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ["HF_HUB_OFFLINE"] = "1"
  with tempfile.TemporaryDirectory() as workdir:
    record = {"origin": origin(), **run(workdir)}
  GOLDEN.write_text(json.dumps(record, indent=1) + "\n")
  print(f"wrote {GOLDEN.relative_to(REPO_ROOT)}: {len(record['records'])} records,"
        f" {len(record['param_sums'])} parameters")
  return 0


if __name__ == "__main__":
  sys.exit(main())
