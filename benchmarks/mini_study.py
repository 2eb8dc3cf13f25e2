"""The main job's wall time: the miniature study end to end, timed as a user runs it.

    python benchmarks/mini_study.py --runs=3 --out=runs/mini_bench     # the 15-minute figure

Each run is the README's main-job command in a fresh workdir (run k trains with seed
`--seed` + k, so the runs are also independent seeds of the study; run 0 is the README's), timed
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
  return {f"{branch}/{k.split('/', 1)[1]}": v for k, v in results.items()
          if k.endswith("/success") or k.endswith("/training_rule")}


def pool_seeds(run_dirs: list[str], out: str) -> dict:
  """The runs' curves pooled over training seeds: at each branch's k-th evaluation, the mean
  FLOPs and each score's mean, its error bar the binomial one of all seeds' episodes
  (sqrt(p(1-p)/(seeds N))), and the seeds' spread; drawn as `<out>/seeds.png`,
  `<out>/seeds_probes.png` and tabled as `<out>/seeds.md`."""
  import math  # noqa: PLC0415

  from jaxrl_gen import experiment, plots  # noqa: PLC0415

  curves = [plots.read_records([os.path.join(d, "curves.jsonl")]) for d in run_dirs]
  pooled = []
  for branch in dict.fromkeys(r["branch"] for r in curves[0]):
    points = [[r for r in c if r["branch"] == branch] for c in curves]
    for k in range(min(len(p) for p in points)):
      same = [p[k] for p in points]
      record = {"branch": branch, "flops": statistics.mean(r["flops"] for r in same)}
      for key in same[0]:
        if key.startswith("eval/") and not key.endswith(("_stderr", "_seed_std")) and all(
            key in r for r in same):
          values = [r[key] for r in same]
          record[key] = statistics.mean(values)
          record[key + "_spread"] = [min(values), max(values)]
          if key + "_stderr" in same[0]:  # a rate: binomial over the seeds' episodes
            n = sum(_trials(r, key) for r in same)
            record[key + "_stderr"] = math.sqrt(record[key] * (1 - record[key]) / n)
      pooled.append(record)
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "seeds.jsonl")
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in pooled)
  records = plots.read_records([path])
  plots.plot(records, os.path.join(out, "seeds.png"), panels=["id", "rule_ood"],
             title=f"GP-L miniature, {len(run_dirs)} training seeds pooled")
  plots.plot_probes(records, os.path.join(out, "seeds_probes.png"))
  ends = {}
  summaries = [json.load(open(os.path.join(d, "summary.json"))) for d in run_dirs]
  for phase in ("pretrain", "init", "rl", "sft"):
    same = [s[phase] for s in summaries]
    row = {"flops": statistics.mean(r["flops"] for r in same)} if "flops" in same[0] else {}
    for key in same[0]:
      if key.startswith("eval/") and not key.endswith(("_stderr", "_seed_std")):
        row[key] = statistics.mean(r[key] for r in same)
        if key + "_stderr" in same[0]:
          n = sum(_trials(r, key) for r in same)
          row[key + "_stderr"] = math.sqrt(row[key] * (1 - row[key]) / n)
    ends[phase] = row
  table = experiment.summary_table(ends, [("id", "success"), ("rule_ood", "success")])
  with open(os.path.join(out, "seeds.md"), "w") as f:
    f.write(table + "\n")
  return ends


def _trials(record: dict, key: str) -> float:
  """The number of trials behind a rate: p(1-p)/stderr^2 (episodes or answers)."""
  p, stderr = record[key], record[key + "_stderr"]
  return p * (1 - p) / stderr ** 2 if stderr else record.get(
      f"{key.rsplit('/', 1)[0]}/episodes", 1.0)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs", type=int, default=3)
  p.add_argument("--out", default="runs/mini_bench", help="parent of the runs' workdirs")
  p.add_argument("--seed", type=int, default=42, help="run k trains with seed + k (42: the "
                 "config's, the README's main job)")
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
  if not args.peer and len(records) > 1:
    pool_seeds([r["workdir"] for r in records], args.out)
    print(open(os.path.join(args.out, "seeds.md")).read())
  return 0


if __name__ == "__main__":
  sys.exit(main())
