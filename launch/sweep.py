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

`--plot eval/rule_ood/success` draws that metric at each run's end (its last record with it,
error bar from `<metric>_stderr`) against the grid's one axis, into `WORKDIR/sweep.png` with
the numbers in `WORKDIR/sweep.json`; `--baseline DIR` plots the gain over DIR's value instead
(a run directory, or an experiment phase whose evaluation is DIR/eval/results.json), e.g. the
paper's Fig. 10, OOD gain against verification steps at equal compute:

    python launch/sweep.py --workdir=runs/gp_mini/viter --grid env.verify_iter=1,3,5,10 \
        --run --plot eval/rule_ood/success --baseline runs/gp_mini/init \
        -- jaxrl-gen train --config=configs/gp_mini.py:rl --config.ppo.init=runs/gp_mini/init \
        --config.ppo.flops_budget=3e13 --compile_cache=runs/gp_mini/compile_cache
"""

from __future__ import annotations

import argparse
import itertools
import json
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
  p.add_argument("--plot", default=None, help="a metric key: draw it against the grid axis")
  p.add_argument("--baseline", default=None, help="with --plot: a run dir to plot gains over")
  p.add_argument("job", nargs=argparse.REMAINDER, help="-- the base command")
  a = p.parse_args(argv)
  job = a.job[1:] if a.job[:1] == ["--"] else a.job
  if not job:
    raise SystemExit("give the base command after '--'")
  if a.tpu and not a.zone:
    raise SystemExit("--tpu needs --zone")
  axes = [parse_axis(g) for g in a.grid]
  if a.plot and len(axes) != 1:
    raise SystemExit("--plot draws a metric against one --grid axis")
  failed = 0
  for cmd in commands(job, a.workdir, axes):
    if a.tpu:
      cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "tpu.py"), "run",
             f"--name={a.tpu}", f"--zone={a.zone}", "--", *cmd]
    print("$ " + shlex.join(cmd), flush=True)
    if a.run or a.tpu:
      code = subprocess.call(cmd)
      if code:
        failed += 1
        print(f"  exit status {code}", file=sys.stderr)
  if a.plot:
    print(plot_sweep(a.workdir, axes[0], a.plot, a.baseline))
  return 1 if failed else 0


def final_value(run_dir: str, key: str) -> tuple[float, float] | None:
  """(value, stderr) of `key` at a run's end: its last metrics.jsonl record with it, or an
  experiment phase's cached evaluation (eval/results.json); None when neither has it."""
  cache = os.path.join(run_dir, "eval", "results.json")
  if os.path.exists(cache):
    with open(cache) as f:
      results = json.load(f)["results"]
    if key in results:
      return results[key], results.get(key + "_stderr", 0.0)
  path = os.path.join(run_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    found = [r for r in map(json.loads, f) if key in r]
  return (found[-1][key], found[-1].get(key + "_stderr", 0.0)) if found else None


def plot_sweep(workdir: str, axis: tuple[str, list[str]], key: str,
               baseline: str | None) -> str:
  """Draws `key` (or its gain over `baseline`) at each grid point's end; returns the PNG."""
  from jaxrl_gen import plots  # noqa: PLC0415  (matplotlib: only when plotting)

  name, values = axis
  base = final_value(baseline, key) if baseline else (0.0, 0.0)
  if base is None:
    raise SystemExit(f"--baseline {baseline}: no {key} there")
  points = []
  for value in values:
    found = final_value(os.path.join(workdir, f"{name}={value}"), key)
    if found is not None:  # a run that has not finished yet is left out
      gain = found[0] - base[0]
      points.append({name: value, key: found[0], "gain": gain,
                     "stderr": (found[1] ** 2 + base[1] ** 2) ** 0.5})
  if not points:
    raise SystemExit(f"no run under {workdir} has {key} yet")
  with open(os.path.join(workdir, "sweep.json"), "w") as f:
    json.dump({"key": key, "baseline": baseline, "baseline_value": base[0], "points": points},
              f, indent=2)
  label = f"{key} gain over {os.path.basename(os.path.normpath(baseline))}" if baseline else key
  return plots.plot_points([p[name] for p in points],
                           [p["gain"] if baseline else p[key] for p in points],
                           [p["stderr"] for p in points], os.path.join(workdir, "sweep.png"),
                           xlabel=name, ylabel=label)


if __name__ == "__main__":
  sys.exit(main())
