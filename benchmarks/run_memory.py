"""Peak resident memory of a tiny SFT run and a tiny RL run, and of what they import first.

    PYTHONPATH=. python benchmarks/run_memory.py                  # sft, rl, imports
    PYTHONPATH=. python benchmarks/run_memory.py --runs=sft \
        --env=XLA_FLAGS=--xla_force_host_platform_device_count=8

Each measurement is a fresh process (`--child`) that runs `jaxrl-gen train` in-process (or
only imports its modules, `imports`) in a scratch workdir and reports its peak RSS (VmHWM)
and whether TensorFlow got imported. `--env KEY=VALUE` (repeatable) sets the children's
environment, so one invocation per setting gives the before/after figures of a change.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = {  # as in tests/test_run_safety.py and tests/tiny_rl.py
    "sft": ["--config=configs/gp.py:l,sft,tiny-text", "--config.sft.steps=4",
            "--config.sft.batch_size=8", "--config.data.train_size=64",
            "--config.checkpoint.every=2"],
    "rl": ["--config=configs/gp.py:l,rl,tiny-text", "--config.ppo.num_updates=2",
           "--config.ppo.num_steps=8", "--config.ppo.num_envs=4", "--config.ppo.grad_accum=2",
           "--config.ppo.eval_every=0", "--config.ppo.value_hidden=(16,)",
           "--config.sampling.max_new_tokens=6", "--config.checkpoint.every=1"],
}
COMMON = ["--config.log.progress=False", "--config.log.tensorboard=False"]
RUNS = ("imports", "sft", "rl")


def peak_megabytes() -> float:
  """This process's peak resident set (VmHWM), in MB."""
  for line in pathlib.Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) / 1024
  raise RuntimeError("no VmHWM in /proc/self/status")


def child(run: str, workdir: str) -> dict:
  """Runs `run` in this process; what it measured."""
  from jaxrl_gen import main  # noqa: PLC0415
  from jaxrl_gen.data import expert_tfds  # noqa: F401, PLC0415  (what SFT data needs)
  from jaxrl_gen.train import loop, rl  # noqa: F401, PLC0415

  record = {"run": run, "imports_mb": round(peak_megabytes())}
  if run != "imports":
    sys.argv = ["jaxrl-gen", "train", *TINY[run], *COMMON, f"--workdir={workdir}"]
    try:
      main.run()
    except SystemExit as e:
      record["exit"] = e.code
  record.update(peak_mb=round(peak_megabytes()), tensorflow="tensorflow" in sys.modules)
  return record


def measure(run: str, env: dict[str, str]) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    result = subprocess.run(
        [sys.executable, __file__, f"--child={run}", f"--workdir={workdir}"], cwd=REPO_ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1",
             "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True, text=True, timeout=1800, check=False)
  if result.returncode:
    raise SystemExit(f"{run} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {RUNS}")
  parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the children")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  parser.add_argument("--workdir", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(child(args.child, args.workdir)))
    return
  env = dict(item.split("=", 1) for item in args.env)
  print(f"env: {env or '(as is)'}")
  print(f"{'run':8} {'imports MB':>11} {'peak MB':>8}  tensorflow")
  for run in args.runs.split(","):
    r = measure(run, env)
    print(f"{run:8} {r['imports_mb']:>11} {r['peak_mb']:>8}  {r['tensorflow']}", flush=True)


if __name__ == "__main__":
  main()
