"""Figures in the shape of the paper's Fig. 5/6: a benchmark's score against training FLOPs,
one panel per benchmark (ID, OOD, ...), one curve per branch (SFT, RL), binomial error bars
and optional Savitzky-Golay smoothing (polynomial order 3, as the paper); and of its Fig. 8
(`plot_recognition`): GP-VL success against card-recognition accuracy along each branch.

Input: JSONL metric logs (what the trainers and `eval.flat_metrics` write), one JSON object
per line. A record this module reads has
    branch                             str: the run's branch, e.g. "sft" or "rl"
    flops                              number: training FLOPs spent so far (the x axis)
    eval/<benchmark>/<metric>          number in [0, 1]: a score, e.g. eval/id/success
    eval/<benchmark>/<metric>_stderr   number (optional): its error bar sqrt(P(1-P)/N)
Records without `branch` or `flops`, and every other key, are ignored.

    python -m jaxrl_gen.plots OUT.png LOG.jsonl [LOG.jsonl ...] [--panels id,rule_ood]
        [--metric success] [--smooth 7]
"""

from __future__ import annotations

import argparse
import json
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
from etils import epath  # noqa: E402
from scipy.signal import savgol_filter  # noqa: E402

SMOOTH_ORDER = 3
BRANCH_COLORS = {"sft": "tab:red", "rl": "tab:blue", "init": "tab:gray", "grpo": "tab:green",
                 "grpo_judge": "tab:purple", "pretrain": "tab:olive"}
BRANCH_LINES = {"sft": "--"}  # dashed, so a branch drawn over another's scores stays visible
# The metric a panel shows when none is named: the paper's for each kind of benchmark.
METRIC_ORDER = ("success", "per_step_accuracy", "route_success", "recognition_accuracy")


def read_records(paths: Iterable[str]) -> list[dict]:
  """The records of JSONL files that carry a branch and a FLOPs count."""
  records = []
  for path in paths:
    with epath.Path(path).open("r", encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}:{number}: not a JSON line ({e.msg})") from None
        if isinstance(record, dict) and "branch" in record and "flops" in record:
          records.append(record)
  return records


def benchmarks_in(records: Sequence[dict]) -> list[str]:
  """Benchmark names with at least one headline score (`METRIC_ORDER`; not the probes), in
  order of first appearance."""
  names = []
  for record in records:
    for key in record:
      parts = key.split("/")
      if (len(parts) == 3 and parts[0] == "eval" and parts[1] not in names
          and parts[2] in METRIC_ORDER):
        names.append(parts[1])
  return names


def default_metric(records: Sequence[dict], benchmark: str) -> str:
  """The headline metric of a benchmark: recognition accuracy for recognition benchmarks,
  else the first of success / per-step accuracy / route success the records have."""
  order = METRIC_ORDER[::-1] if benchmark.startswith("recognition") else METRIC_ORDER
  for metric in order:
    if any(f"eval/{benchmark}/{metric}" in r for r in records):
      return metric
  raise ValueError(f"no scores for benchmark {benchmark!r} in the records")


def series(records: Sequence[dict], benchmark: str, metric: str) -> dict[str, tuple]:
  """{branch: (flops, score, stderr)} arrays sorted by FLOPs (stderr 0 where absent)."""
  key = f"eval/{benchmark}/{metric}"
  points: dict[str, list] = {}
  for record in records:
    if key in record:
      points.setdefault(str(record["branch"]), []).append(
          (float(record["flops"]), float(record[key]), float(record.get(key + "_stderr", 0.0))))
  return {branch: tuple(np.array(column) for column in zip(*sorted(rows)))
          for branch, rows in points.items()}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Savitzky-Golay (order 3) with the window clamped to the number of points (and odd);
  too few points for an order-3 fit are returned as they are."""
  window = min(int(window), len(values))
  window -= 1 - window % 2
  if window <= SMOOTH_ORDER:
    return np.asarray(values, dtype=float)
  return savgol_filter(values, window, SMOOTH_ORDER)


def plot(records: Sequence[dict], out_path: str, *, panels: Sequence[str] | None = None,
         metric: str | None = None, smooth_window: int | None = None,
         title: str | None = None) -> str:
  """Draws one panel per benchmark (default: all in the records) and saves a PNG."""
  panels = list(panels or benchmarks_in(records))
  if not panels:
    raise ValueError("no eval/<benchmark>/<metric> scores with branch and flops to plot")
  specs = []
  for benchmark in panels:
    name = metric or default_metric(records, benchmark)
    specs.append((f"{benchmark}: {name.replace('_', ' ')}", [(benchmark, name, "-")], "%"))
  return _figure(records, out_path, specs, smooth_window, title)


# The memorization probes' panels: (title, [(benchmark, metric, line style)], unit).
PROBE_PANELS = (
    ("rule OOD: answers using J/Q/K = 10", [("rule_ood", "training_rule", "-")], "%"),
    ("rule OOD: first answers that parse", [("rule_ood", "parse_rate_first", "-")], "%"),
    ("exact match of SFT targets (train —, held out ··)",
     [("memorization", "exact_match_train", "-"),
      ("memorization", "exact_match_heldout", ":")], "%"),
    ("NLL gap, held out - train (nats/token)", [("memorization", "nll_gap", "-")], "nats"),
)


def _probe_specs(records: Sequence[dict]) -> list:
  return [(name, lines, unit) for name, lines, unit in PROBE_PANELS
          if any(series(records, b, m) for b, m, _ in lines)]


def has_probes(records: Sequence[dict]) -> bool:
  """Whether the records hold any memorization probe `plot_probes` draws."""
  return bool(_probe_specs(records))


def plot_probes(records: Sequence[dict], out_path: str, *, title: str | None = None) -> str:
  """The memorization probes (`jaxrl_gen.probes`) against training FLOPs, one panel each of
  those the records hold."""
  specs = _probe_specs(records)
  if not specs:
    raise ValueError("no memorization probes in the records")
  return _figure(records, out_path, specs, None, title)


def plot_recognition(records: Sequence[dict], out_path: str, *,
                     pairs: Sequence[tuple[str, str]] = (("id", "recognition_id"),
                                                          ("visual_ood", "recognition_visual_ood")),
                     title: str | None = None) -> str:
  """The paper's Fig. 8 shape: success (y) against card-recognition accuracy (x), one panel
  per (benchmark, its recognition benchmark) pair the records hold, each branch's evaluations
  joined in FLOPs order (the first point marked larger: where the branch starts)."""
  specs = []
  for bench, recognition in pairs:
    success = series(records, bench, "success")
    accuracy = series(records, recognition, "recognition_accuracy")
    if any(branch in accuracy for branch in success):
      specs.append((bench, recognition, success, accuracy))
  if not specs:
    raise ValueError("no success and recognition_accuracy scores of the same branch to plot")
  fig, axes = plt.subplots(1, len(specs), figsize=(4.2 * len(specs), 3.6), squeeze=False)
  for ax, (bench, recognition, success, accuracy) in zip(axes[0], specs):
    for branch in sorted(set(success) & set(accuracy)):
      by_flops = dict(zip(accuracy[branch][0], zip(accuracy[branch][1], accuracy[branch][2])))
      rows = [(f, s, e) + by_flops[f] for f, s, e in zip(*success[branch]) if f in by_flops]
      if not rows:
        continue
      _, ys, yerr, xs, xerr = (100 * np.array(c) for c in zip(*rows))
      color = BRANCH_COLORS.get(branch.lower())
      ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt=BRANCH_LINES.get(branch.lower(), "-") + "o",
                  ms=3, capsize=2, color=color, label=branch.upper())
      ax.plot(xs[:1], ys[:1], "o", ms=7, color=color)
    ax.set_title(f"{bench}", fontsize="medium")
    ax.set_xlabel(f"{recognition.replace('_', ' ')} accuracy (%)", fontsize="small")
    ax.set_ylabel(f"{bench} success (%)", fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
  return _save(fig, out_path, title)


def plot_points(xs: Sequence, ys: Sequence[float], stderrs: Sequence[float], out_path: str, *,
                xlabel: str, ylabel: str) -> str:
  """One metric (in [0, 1], drawn in %) against a sweep's values, with error bars: e.g. the
  OOD gain against verification steps (the paper's Fig. 10)."""
  fig, ax = plt.subplots(figsize=(4.6, 3.4))
  labels = [str(x) for x in xs]
  ax.errorbar(range(len(xs)), 100 * np.asarray(ys, float), yerr=100 * np.asarray(stderrs),
              fmt="o-", capsize=3, color=BRANCH_COLORS["rl"])
  ax.axhline(0.0, color="gray", lw=0.8)
  ax.set_xticks(range(len(xs)), labels)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(f"{ylabel} (%)", fontsize="small")
  ax.grid(alpha=0.3)
  return _save(fig, out_path)


def _figure(records, out_path, specs, smooth_window, title) -> str:
  """Panels of (title, [(benchmark, metric, style)], unit): one curve per branch and line."""
  fig, axes = plt.subplots(1, len(specs), figsize=(4.2 * len(specs), 3.4), squeeze=False)
  for ax, (name, lines, unit) in zip(axes[0], specs):
    scale = 100.0 if unit == "%" else 1.0
    drawn = False
    for benchmark, metric, style in lines:
      curves = series(records, benchmark, metric)
      for branch, (flops, score, stderr) in sorted(curves.items()):
        color = BRANCH_COLORS.get(branch.lower())
        ax.errorbar(flops, scale * score, yerr=scale * stderr, fmt="o", ms=3, capsize=2,
                    color=color, alpha=0.45 if smooth_window else 0.9)
        line = smooth(score, smooth_window) if smooth_window else score
        ax.plot(flops, scale * line, BRANCH_LINES.get(branch.lower(), style) if style == "-"
                else style, color=color, label=branch.upper() if style == "-" else None)
        drawn = True
    if not drawn:
      raise ValueError(f"no {', '.join(f'eval/{b}/{m}' for b, m, _ in lines)} scores "
                       "in the records")
    if unit == "%":
      low, high = ax.get_ylim()  # at most a sliver below 0%, and at least 5% tall
      high = max(high, 5.0)
      ax.set_ylim(max(low, -0.03 * high), high)
    ax.set_title(name, fontsize="medium")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
  return _save(fig, out_path, title)


def _save(fig, out_path: str, title: str | None = None) -> str:
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  out = epath.Path(out_path)  # a gs:// workdir's figures too
  out.parent.mkdir(parents=True, exist_ok=True)
  with out.open("wb") as f:
    fig.savefig(f, dpi=120, format="png")
  plt.close(fig)
  return out_path


def main(argv: Sequence[str] | None = None):
  parser = argparse.ArgumentParser(prog="python -m jaxrl_gen.plots", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("out", help="the PNG to write")
  parser.add_argument("logs", nargs="+", help="JSONL metric logs")
  parser.add_argument("--panels", default="", help="comma list of benchmarks (default: all)")
  parser.add_argument("--metric", default=None, help="metric of every panel (default: headline)")
  parser.add_argument("--smooth", type=int, default=None, help="Savitzky-Golay window")
  parser.add_argument("--title", default=None)
  args = parser.parse_args(argv)
  try:
    panels = [p.strip() for p in args.panels.split(",") if p.strip()]
    plot(read_records(args.logs), args.out, panels=panels, metric=args.metric,
         smooth_window=args.smooth, title=args.title)
  except (OSError, ValueError) as e:
    parser.exit(2, f"jaxrl_gen.plots: {e}\n")
  print(args.out)


if __name__ == "__main__":
  main()
