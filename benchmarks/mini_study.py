"""The main job's wall time: the miniature study end to end, timed as a user runs it, and the
paired tests of its claims over the runs.

    python benchmarks/mini_study.py --runs=3 --out=runs/mini_bench     # the wall-time figure
    python benchmarks/mini_study.py --runs=3 --report                  # and the paired tests
    python benchmarks/mini_study.py --report --out=runs/mini_bench     # the tests only
    python benchmarks/mini_study.py --report --records=docs/mini_bench/gp_mini   # + records
    python benchmarks/mini_study.py --config=configs/gp_vl_mini.py --runs=3 --report \
        --out=runs/mini_vl                                             # another miniature

Each run is the main-job command (`jaxrl-gen experiment --config=<--config>`, by default
configs/gp_mini.py, the README's) in a fresh workdir `<out>/run_<seed>` (run k trains with
seed `--seed` + k, so the runs are also independent seeds of the study; run 0 is the
README's), timed as a whole process; the experiment's own `phase_seconds.json` splits each
run's time by phase. Prints one line per run and the median, and writes `<out>/timings.json`.
The peer is the main job before the miniature (`jaxrl-gen experiment
--config=configs/gp.py:l,tiny`), measured at 1.5-2 hours on the same 2 cores (docs/rl.md);
run it with `--peer` to time it again.

`--report` (after training, or alone: then it trains nothing and reads every finished
`<out>/run_*`) pools the runs hand by hand (`report`): `<out>/report.md` and
`<out>/report.json`, per benchmark the runs logged and per phase pair, the paired tests of
`jaxrl_gen.stats` on episode success; with several runs also the pooled curves and table
(`pool_seeds`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

DEFAULT_CONFIG = "configs/gp_mini.py"
PEER_JOB = ["jaxrl-gen", "experiment", "--config=configs/gp.py:l,tiny",
            "--config.data.revisions=0", "--config.data.train_size=38400",
            "--config.env.verify_iter=1", "--config.env.forced_fail_step=False"]


def main_job(config: str = DEFAULT_CONFIG) -> list[str]:
  """The main-job command of a miniature config."""
  return ["jaxrl-gen", "experiment", f"--config={config}"]


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


def pool_seeds(run_dirs: list[str], out: str, label: str = "GP-L miniature") -> dict:
  """The runs' curves pooled over training seeds: at each branch's k-th evaluation, the mean
  FLOPs and each score's mean, its error bar the binomial one of all seeds' episodes
  (sqrt(p(1-p)/(seeds N))), and the seeds' spread; drawn as `<out>/seeds.png`,
  `<out>/seeds_probes.png` (when the runs measured the probes) and tabled as
  `<out>/seeds.md`, over the benchmarks and phases the runs have."""
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
  names = plots.benchmarks_in(records)
  plots.plot(records, os.path.join(out, "seeds.png"), panels=names,
             title=f"{label}, {len(run_dirs)} training seeds pooled")
  if plots.has_probes(records):
    plots.plot_probes(records, os.path.join(out, "seeds_probes.png"))
  ends = {}
  summaries = [_read_json(os.path.join(d, "summary.json")) for d in run_dirs]
  for phase in _phases(summaries):
    same = [s[phase] for s in summaries]
    row = {"flops": statistics.mean(r["flops"] for r in same)} if "flops" in same[0] else {}
    for key in same[0]:
      if key.startswith("eval/") and not key.endswith(("_stderr", "_seed_std")):
        row[key] = statistics.mean(r[key] for r in same)
        if key + "_stderr" in same[0]:
          n = sum(_trials(r, key) for r in same)
          row[key + "_stderr"] = math.sqrt(row[key] * (1 - row[key]) / n)
    ends[phase] = row
  table = experiment.summary_table(ends, [(n, plots.default_metric(records, n)) for n in names])
  with open(os.path.join(out, "seeds.md"), "w") as f:
    f.write(table + "\n")
  return ends


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _phases(summaries: list[dict]) -> list[str]:
  """The phases (pretrain, init, the branches) whose ends every summary holds, in order."""
  from jaxrl_gen import experiment  # noqa: PLC0415

  return [p for p in ("pretrain", "init", *experiment.BRANCHES)
          if all(isinstance(s.get(p), dict) for s in summaries)]


def comparisons(phases: list[str]) -> list[tuple[str, str]]:
  """The phase pairs (a, b) the report tests, effect b - a: pretrain -> init, init -> each
  branch, and RL against SFT (sft -> rl: positive when RL ends higher)."""
  pairs = [("pretrain", "init")] if "pretrain" in phases and "init" in phases else []
  pairs += [("init", b) for b in phases if b not in ("pretrain", "init") and "init" in phases]
  if "rl" in phases and "sft" in phases:
    pairs.append(("sft", "rl"))
  return pairs


def run_dirs(out: str) -> list[str]:
  """The runs' workdirs `<out>/run_<seed>`, by seed."""
  names = os.listdir(out) if os.path.isdir(out) else []
  seeds = {n: n.removeprefix("run_") for n in names
           if n.startswith("run_") and os.path.isdir(os.path.join(out, n))}
  order = sorted(seeds, key=lambda n: (0, int(seeds[n]), n) if seeds[n].isdigit() else (1, 0, n))
  return [os.path.join(out, n) for n in order]


def load_run(run_dir: str) -> dict | None:
  """A finished run's training seed, phases and per-hand outcomes {phase: {benchmark:
  `eval.outcomes`}} of each phase's last evaluation (`experiment.end_eval_dir`), over the
  benchmarks whose logs every phase has (in the summary's order); None before summary.json."""
  from jaxrl_gen import eval as eval_lib, experiment  # noqa: PLC0415

  path = os.path.join(run_dir, "summary.json")
  if not os.path.exists(path):
    return None
  summary = _read_json(path)
  phases = [p for p in _phases([summary]) if os.path.isdir(os.path.join(run_dir, p))]
  ends = {p: experiment.end_eval_dir(os.path.join(run_dir, p)) for p in phases}
  names = dict.fromkeys(k.split("/")[1] for p in phases for k in summary[p]
                        if k.startswith("eval/") and k.count("/") == 2)
  names = [n for n in names
           if all(os.path.exists(os.path.join(d, eval_lib.seed_log_name(n, 0)))
                  for d in ends.values())]
  config_path = os.path.join(run_dir, phases[0], "config.json") if phases else ""
  seed = (_read_json(config_path)["seed"] if os.path.exists(config_path)
          else int(os.path.basename(run_dir).rsplit("_", 1)[-1]))
  return {"workdir": run_dir, "seed": seed, "phases": phases,
          "outcomes": {p: {n: eval_lib.outcomes(ends[p], n) for n in names} for p in phases}}


def report(out: str, resamples: int = 10000) -> dict:
  """The paired tests over every finished run in `out` (`jaxrl_gen.stats`), on each hand's
  episode success (GP: solved within its attempts; V-IRL: the route completed): per
  benchmark and phase, the pooled and per-seed success; per phase pair (a, b), effect
  b - a: the discordant hands, the exact McNemar p per seed and combined over seeds, the
  paired bootstrap interval over all hands pooled, and with two or more seeds the seed-level
  test (paired t and exact sign flips on the seeds' success rates). Writes
  `<out>/report.json` and `<out>/report.md`; returns the JSON."""
  from jaxrl_gen import eval as eval_lib, stats  # noqa: PLC0415

  runs, skipped = [], []
  for d in run_dirs(out):
    run = load_run(d)
    (runs if run is not None else skipped).append(run if run is not None else d)
  if not runs:
    raise SystemExit(f"{out}: no finished run_* workdir (with summary.json) to report on")
  phases = [p for p in runs[0]["phases"] if all(p in r["phases"] for r in runs)]
  names = [n for n in runs[0]["outcomes"][phases[0]]
           if all(n in r["outcomes"][p] for r in runs for p in phases)] if phases else []
  seeds = [r["seed"] for r in runs]
  result = {"effect": "b - a: the second phase's success minus the first's, hand by hand",
            "runs": [{"seed": r["seed"], "workdir": r["workdir"]} for r in runs],
            "skipped": skipped, "benchmarks": {}}
  for name in names:
    success = {p: [np.array([float(o["success"]) for o in r["outcomes"][p][name]])
                   for r in runs] for p in phases}
    bench = {"phases": {p: {"success": float(np.concatenate(success[p]).mean()),
                            "hands": int(sum(len(x) for x in success[p])),
                            "per_seed": dict(zip(map(str, seeds),
                                                 (float(x.mean()) for x in success[p])))}
                        for p in phases}, "comparisons": []}
    for a, b in comparisons(phases):
      pairs = [eval_lib.paired(r["outcomes"][a][name], r["outcomes"][b][name]) for r in runs]
      pooled_a = np.concatenate([x for x, _ in pairs])
      pooled_b = np.concatenate([y for _, y in pairs])
      n01, n10 = stats.discordant(pooled_a, pooled_b)
      per_seed = []
      for seed, (x, y) in zip(seeds, pairs):
        s01, s10 = stats.discordant(x, y)
        per_seed.append({"seed": seed, "hands": len(x), "a_success": float(x.mean()),
                         "b_success": float(y.mean()), "n01": s01, "n10": s10,
                         "mcnemar_p": stats.exact_mcnemar_p(s01, s10)})
      bench["comparisons"].append({
          "a": a, "b": b, "label": f"{b} - {a}", "hands": len(pooled_a),
          "a_success": float(pooled_a.mean()), "b_success": float(pooled_b.mean()),
          "n01": n01, "n10": n10, "discordance": (n01 + n10) / max(len(pooled_a), 1),
          "mcnemar_p": stats.mcnemar_combined(pairs), "per_seed": per_seed,
          "bootstrap": stats.paired_bootstrap(pooled_a, pooled_b, n=resamples),
          "seed_test": stats.seed_test([r["a_success"] for r in per_seed],
                                       [r["b_success"] for r in per_seed])
          if len(runs) > 1 else None})
    result["benchmarks"][name] = bench
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(report_markdown(result))
  return result


def report_markdown(result: dict) -> str:
  """`report`'s JSON as Markdown: per benchmark, the phases' success and the phase pairs'
  tests."""
  from jaxrl_gen import stats  # noqa: PLC0415

  seeds = [str(r["seed"]) for r in result["runs"]]
  floor = f", here {2 / 2 ** len(seeds):.3g}" if len(seeds) > 1 else ""
  lines = [f"# Paired tests over {len(seeds)} training seeds ({', '.join(seeds)})", "",
           "Episode success per hand, the same hands for every phase of a run. Effect = b - a "
           "(the second phase's success minus the first's); n01 = hands only b solved, n10 = "
           "hands only a solved. McNemar: exact two-sided, per seed and on the seeds' pooled "
           "discordant hands; CI: 95% paired bootstrap over all hands pooled; seed-level: "
           "paired t and exact sign-flip p over the seeds' success rates (with n seeds the "
           f"sign-flip p is at least 2/2^n{floor}).", ""]
  if result["skipped"]:
    lines += [f"Unfinished, left out: {', '.join(result['skipped'])}", ""]
  for name, bench in result["benchmarks"].items():
    hands = next(iter(bench["phases"].values()))["hands"] if bench["phases"] else 0
    lines += [f"## {name} ({hands} hands per phase)", "",
              "| phase | pooled | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---" * (len(seeds) + 2) + "|"]
    for phase, row in bench["phases"].items():
      lines.append(f"| {phase} | {100 * row['success']:.1f}% | "
                   + " | ".join(f"{100 * row['per_seed'][s]:.1f}%" for s in seeds) + " |")
    lines += ["", "| b - a | a → b | effect [95% CI] | n01 / n10 | McNemar p (seeds pooled) "
              "| McNemar p per seed | seed-level t p | sign-flip p |", "|---" * 8 + "|"]
    for c in bench["comparisons"]:
      boot, seed = c["bootstrap"], c["seed_test"]
      lines.append(
          f"| {c['label']} | {100 * c['a_success']:.1f}% → {100 * c['b_success']:.1f}% | "
          f"{100 * boot['effect']:+.1f} [{100 * boot['low']:+.1f}, {100 * boot['high']:+.1f}] | "
          f"{c['n01']} / {c['n10']} | {stats.describe_p(c['mcnemar_p'])} | "
          + ", ".join(stats.describe_p(s["mcnemar_p"]) for s in c["per_seed"]) + " | "
          + (f"{stats.describe_p(seed['t_p'])} | {stats.describe_p(seed['sign_flip_p'])} |"
             if seed else "- | - |"))
    lines.append("")
  return "\n".join(lines)


OUT_FILES = ("timings.json", "report.json", "report.md", "seeds.md", "seeds.jsonl", "seeds.png",
             "seeds_probes.png")
RUN_FILES = ("summary.json", "summary.md", "phase_seconds.json", "curves.jsonl")


def export_records(out: str, dest: str) -> list[str]:
  """The study's raw records, small enough to commit (docs/mini_bench/): `out`'s timings,
  report and pooled curves, and per finished run its summary, phase split, curves and
  `outcomes.jsonl.gz`, one line per hand {phase, benchmark, eval_seed, sample_id, hand,
  success, attempts, reward, steps} of each phase's last evaluation (what `report` pairs;
  the full step logs stay in the workdirs). Returns the files written."""
  import gzip  # noqa: PLC0415
  import shutil  # noqa: PLC0415

  written = []
  os.makedirs(dest, exist_ok=True)
  for name in OUT_FILES:
    if os.path.exists(os.path.join(out, name)):
      shutil.copyfile(os.path.join(out, name), os.path.join(dest, name))
      written.append(os.path.join(dest, name))
  for run_dir in run_dirs(out):
    run = load_run(run_dir)
    if run is None:
      continue
    target = os.path.join(dest, os.path.basename(run_dir))
    os.makedirs(target, exist_ok=True)
    for name in RUN_FILES:
      if os.path.exists(os.path.join(run_dir, name)):
        shutil.copyfile(os.path.join(run_dir, name), os.path.join(target, name))
        written.append(os.path.join(target, name))
    path = os.path.join(target, "outcomes.jsonl.gz")
    with gzip.open(path, "wt", encoding="utf-8") as f:
      for phase, benchmarks in run["outcomes"].items():
        for benchmark, hands in benchmarks.items():
          f.writelines(json.dumps({"phase": phase, "benchmark": benchmark, **hand}) + "\n"
                       for hand in hands)
    written.append(path)
  return written


def _trials(record: dict, key: str) -> float:
  """The number of trials behind a rate: p(1-p)/stderr^2 (episodes or answers)."""
  p, stderr = record[key], record[key + "_stderr"]
  return p * (1 - p) / stderr ** 2 if stderr else record.get(
      f"{key.rsplit('/', 1)[0]}/episodes", 1.0)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs", type=int, default=None,
                 help="runs to train (default 3; with --report 0: report on <out> only)")
  p.add_argument("--out", default="runs/mini_bench", help="parent of the runs' workdirs")
  p.add_argument("--config", default=DEFAULT_CONFIG, help="the miniature's config file")
  p.add_argument("--seed", type=int, default=42, help="run k trains with seed + k (42: the "
                 "config's, the README's main job)")
  p.add_argument("--peer", action="store_true", help="time the pre-miniature main job instead")
  p.add_argument("--report", action="store_true", help="write <out>/report.md and report.json:"
                 " the paired tests over <out>/run_* (after training --runs, or alone)")
  p.add_argument("--records", default="", help="with --report: copy the raw records to commit"
                 " (timings, report, each run's summary and per-hand outcomes) here, e.g."
                 " docs/mini_bench/gp_mini")
  args, extra = p.parse_known_args(argv)
  runs = args.runs if args.runs is not None else (0 if args.report else 3)
  label = os.path.basename(args.config).partition(":")[0].removesuffix(".py")
  os.makedirs(args.out, exist_ok=True)
  records = []
  for k in range(runs):
    seed = args.seed + k
    command = (PEER_JOB if args.peer else main_job(args.config)) + [f"--config.seed={seed}"] + extra
    record = run_once(command, os.path.join(args.out, f"{'peer' if args.peer else 'run'}_{seed}"))
    records.append(dict(record, seed=seed, command=" ".join(command)))
    phases = ", ".join(f"{name} {s:.0f}s" for name, s in record["phase_seconds"].items())
    print(f"seed {seed}: {record['wall_seconds']:.0f} s ({phases})", flush=True)
  if records:
    walls = [r["wall_seconds"] for r in records]
    median = statistics.median(walls)
    print(f"median wall time over {len(walls)} runs: {median:.0f} s ({median / 60:.1f} min); "
          f"range {min(walls):.0f}-{max(walls):.0f} s; cores: {os.cpu_count()}")
    with open(os.path.join(args.out, "timings.json"), "w") as f:
      json.dump({"median_seconds": median, "runs": records}, f, indent=2)
  if args.peer:
    return 0
  if args.report:
    result = report(args.out)
    finished = [r["workdir"] for r in result["runs"]]
  else:
    finished = [r["workdir"] for r in records]
  if len(finished) > 1:
    pool_seeds(finished, args.out, label=f"{label} miniature")
    print(open(os.path.join(args.out, "seeds.md")).read())
  if args.report:
    print(open(os.path.join(args.out, "report.md")).read())
    if args.records:
      print(f"{len(export_records(args.out, args.records))} record files in {args.records}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
