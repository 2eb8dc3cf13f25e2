"""The main job's wall time: the miniature study end to end, timed as a user runs it.

    python benchmarks/mini_study.py --runs=3 --out=runs/mini_bench     # the 15-minute figure

Each run is the README's main-job command in a fresh workdir (`--seed` k gives run k the
training seed `config.seed` + k, so the runs are also independent seeds of the study), timed
as a whole process; the experiment's own `phase_seconds.json` splits each run's time by
phase. Prints one line per run and the median, and writes `<out>/timings.json`. The peer is
the main job before the miniature (`jaxrl-gen experiment --config=configs/gp.py:l,tiny`),
measured at 1.5-2 hours on the same 2 cores (docs/rl.md); run it with `--peer` to time it again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MAIN_JOB = ["jaxrl-gen", "experiment", "--config=configs/gp_mini.py"]
PEER_JOB = ["jaxrl-gen", "experiment", "--config=configs/gp.py:l,tiny",
            "--config.data.revisions=0", "--config.data.train_size=38400",
            "--config.env.verify_iter=1", "--config.env.forced_fail_step=False"]


def run_once(command: list[str], workdir: str) -> dict:
  """One run of `command` in a fresh `workdir`: its wall seconds and phase split."""
  if os.path.exists(workdir):
    raise SystemExit(f"{workdir} exists: a timed run starts from an empty workdir")
  started = time.perf_counter()
  subprocess.run(command + [f"--workdir={workdir}"], check=True,
                 stdout=subprocess.DEVNULL)
  wall = time.perf_counter() - started
  with open(os.path.join(workdir, "phase_seconds.json")) as f:
    phases = json.load(f)
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  return {"workdir": workdir, "wall_seconds": wall, "phase_seconds": phases,
          "scores": {k: v for branch in ("pretrain", "init", "rl", "sft")
                     for k, v in _headline(summary.get(branch, {}), branch).items()}}


def _headline(results: dict, branch: str) -> dict:
  return {f"{branch}/{k.split('/')[1]}": v for k, v in results.items()
          if k.endswith("/success") or k.endswith("/training_rule")}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs", type=int, default=3)
  p.add_argument("--out", default="runs/mini_bench", help="parent of the runs' workdirs")
  p.add_argument("--seed", type=int, default=0, help="run k trains with seed + k")
  p.add_argument("--peer", action="store_true", help="time the pre-miniature main job instead")
  args, extra = p.parse_known_args(argv)
  os.makedirs(args.out, exist_ok=True)
  records = []
  for k in range(args.runs):
    seed = args.seed + k
    command = (PEER_JOB if args.peer else MAIN_JOB) + [f"--config.seed={seed}"] + extra
    record = run_once(command, os.path.join(args.out, f"{'peer' if args.peer else 'run'}_{seed}"))
    records.append(dict(record, seed=seed, command=" ".join(command)))
    phases = ", ".join(f"{name} {s:.0f}s" for name, s in record["phase_seconds"].items())
    print(f"seed {seed}: {record['wall_seconds']:.0f} s ({phases})", flush=True)
  walls = [r["wall_seconds"] for r in records]
  median = statistics.median(walls)
  print(f"median wall time over {len(walls)} runs: {median:.0f} s ({median / 60:.1f} min); "
        f"range {min(walls):.0f}-{max(walls):.0f} s; cores: {os.cpu_count()}")
  with open(os.path.join(args.out, "timings.json"), "w") as f:
    json.dump({"median_seconds": median, "runs": records}, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
