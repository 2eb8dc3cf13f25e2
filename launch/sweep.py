"""Ablation sweeps through config overrides: one run per point of a grid.

    python launch/sweep.py --workdir=runs/viter \\
        --grid env.verify_iter=1,3,5,10 --grid ppo.clip=0.1,0.2 \\
        -- jaxrl-gen train --config=configs/gp.py:l,rl,tiny

prints one command per grid point (the product of the `--grid` axes), each with
`--config.KEY=VALUE` overrides and its own workdir `WORKDIR/KEY=VALUE,KEY=VALUE`; `--run`
runs them one after another here (a failed run is reported and the sweep goes on), and
`--tpu NAME --zone ZONE` starts each on a TPU slice through `launch/tpu.py run` instead (one
at a time: a slice runs one job). Runs resume from their workdirs, so re-running a sweep
continues it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import subprocess
import sys


def parse_axis(text: str) -> tuple[str, list[str]]:
  """'env.verify_iter=1,3,5' -> ('env.verify_iter', ['1', '3', '5'])."""
  key, sep, values = text.partition("=")
  items = [v.strip() for v in values.split(",") if v.strip()]
  if not sep or not key.strip() or not items:
    raise SystemExit(f"--grid {text!r}: expected KEY=V1,V2,...")
  return key.strip(), items


def points(axes: list[tuple[str, list[str]]]) -> list[list[tuple[str, str]]]:
  """Every combination of the axes' values, the last axis varying fastest."""
  keys = [k for k, _ in axes]
  if len(set(keys)) != len(keys):
    raise SystemExit(f"--grid names a key twice: {keys}")
  return [list(zip(keys, combo)) for combo in itertools.product(*(v for _, v in axes))]


def commands(job: list[str], workdir: str, axes) -> list[list[str]]:
  """The command of each grid point: the job, its overrides and its workdir."""
  out = []
  for point in points(axes):
    name = ",".join(f"{k}={v}" for k, v in point) or "base"
    out.append(job + [f"--config.{k}={v}" for k, v in point]
               + [f"--workdir={os.path.join(workdir, name)}"])
  return out


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="parent of the runs' workdirs")
  p.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... (repeatable)")
  p.add_argument("--run", action="store_true", help="run the commands here, one by one")
  p.add_argument("--tpu", default=None, help="TPU VM name: start each run there")
  p.add_argument("--zone", default=None, help="the TPU VM's zone (with --tpu)")
  p.add_argument("job", nargs=argparse.REMAINDER, help="-- the base command")
  a = p.parse_args(argv)
  job = a.job[1:] if a.job[:1] == ["--"] else a.job
  if not job:
    raise SystemExit("give the base command after '--'")
  if a.tpu and not a.zone:
    raise SystemExit("--tpu needs --zone")
  failed = 0
  for cmd in commands(job, a.workdir, [parse_axis(g) for g in a.grid]):
    if a.tpu:
      cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "tpu.py"), "run",
             f"--name={a.tpu}", f"--zone={a.zone}", "--", *cmd]
    print("$ " + shlex.join(cmd), flush=True)
    if a.run or a.tpu:
      code = subprocess.call(cmd)
      if code:
        failed += 1
        print(f"  exit status {code}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
