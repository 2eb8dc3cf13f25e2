"""`benchmarks/mini_study.py --report`: the paired tests over the runs' per-hand outcomes, on
synthetic workdirs in the layout `jaxrl-gen experiment` writes (summary.json, each phase's
config.json and its last evaluation's JSONL logs, written by `eval.write_log`)."""

import importlib.util
import json
import math

import pytest

from jaxrl_gen import eval as evaluation
from jaxrl_gen.envs import batch

RANKS = "A23456789TJQK"
SEEDS_PER_EVAL, HANDS = 2, 8  # 16 hands a phase a run
# {benchmark: {run seed: {phase: hands solved}}}, hand k = eval seed k // 8, episode k % 8.
SOLVED = {
    "id": {42: {"pretrain": {0, 1, 2}, "init": {0, 1, 2, 3}, "rl": set(range(8)),
                "sft": {1, 2, 3}},
           43: {"pretrain": {0, 1, 2}, "init": {8, 9, 10, 11}, "rl": set(range(8, 16)),
                "sft": {9, 10, 11}}},
    "visual_ood": {42: {"pretrain": {0}, "init": {0}, "rl": {0, 1}, "sft": set()},
                   43: {"pretrain": {5}, "init": {0, 1}, "rl": {0, 1, 2, 3}, "sft": {1}}},
}
END_DIRS = {"pretrain": "eval", "init": "eval", "rl": "eval/4", "sft": "eval/sft_step_10"}


@pytest.fixture
def mini_study(repo_root):
  spec = importlib.util.spec_from_file_location("mini_study", repo_root / "benchmarks"
                                                / "mini_study.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def cards(seed: int, eval_seed: int, episode: int) -> list[str]:
  return [f"{suit}{RANKS[(seed + 3 * eval_seed + episode + i) % 13]}"
          for i, suit in enumerate("HSDC")]


def write_logs(log_dir, name: str, seed: int, solved: set, hand_seed: int | None = None):
  """A benchmark's logs over its evaluation seeds: one attempt per hand (+5 or -1)."""
  for j in range(SEEDS_PER_EVAL):
    transitions = [batch.Transition(
        i, 0, 0, (), "{}", 5.0 if j * HANDS + i in solved else -1.0, j * HANDS + i in solved,
        j * HANDS + i not in solved, "msg",
        {"Cards": cards(seed if hand_seed is None else hand_seed, j, i), "Formula": "1+1"})
        for i in range(HANDS)]
    evaluation.write_log(str(log_dir / evaluation.seed_log_name(name, j)), "gp", transitions)


def write_run(out, seed: int):
  run = out / f"run_{seed}"
  summary = {}
  for phase, end in END_DIRS.items():
    (run / phase).mkdir(parents=True)
    (run / phase / "config.json").write_text(json.dumps({"seed": seed}))
    summary[phase] = {"flops": 1e12}
    for name, runs in SOLVED.items():
      solved = runs[seed][phase]
      write_logs(run / phase / end, name, seed, solved)
      summary[phase][f"eval/{name}/success"] = len(solved) / 16
      summary[phase][f"eval/{name}/success_stderr"] = 0.1
    if phase == "rl":  # an earlier evaluation along the branch: not its end
      write_logs(run / phase / "eval" / "2", "id", seed, set())
    if END_DIRS[phase] == "eval":
      (run / phase / "eval" / "results.json").write_text("{}")
  (run / "summary.json").write_text(json.dumps(summary))
  with open(run / "curves.jsonl", "w") as f:
    for branch in ("rl", "sft"):
      for k, phase in enumerate(("init", branch)):
        f.write(json.dumps({"branch": branch, "flops": 1e12 * (1 + k), **{
            key: value for key, value in summary[phase].items() if key.startswith("eval/")}})
            + "\n")
  return run


@pytest.fixture
def runs(tmp_path):
  out = tmp_path / "mini"
  for seed in (42, 43):
    write_run(out, seed)
  (out / "run_44" / "init").mkdir(parents=True)  # still training: no summary.json
  return out


def comparison(result, name, label):
  (found,) = [c for c in result["benchmarks"][name]["comparisons"] if c["label"] == label]
  return found


def test_report_pools_the_runs_hand_by_hand(mini_study, runs):
  result = mini_study.report(str(runs), resamples=2000)
  assert [r["seed"] for r in result["runs"]] == [42, 43]
  assert result["skipped"] == [str(runs / "run_44")]
  assert list(result["benchmarks"]) == ["id", "visual_ood"]  # the benchmarks the runs logged
  phases = result["benchmarks"]["id"]["phases"]
  assert list(phases) == ["pretrain", "init", "rl", "sft"]
  assert phases["rl"] == {"success": 0.5, "hands": 32, "per_seed": {"42": 0.5, "43": 0.5}}
  labels = [c["label"] for c in result["benchmarks"]["id"]["comparisons"]]
  assert labels == ["init - pretrain", "rl - init", "sft - init", "rl - sft"]

  rl = comparison(result, "id", "rl - init")  # each seed: 4 hands gained, none lost
  assert (rl["n01"], rl["n10"], rl["hands"]) == (8, 0, 32)
  assert [(s["n01"], s["n10"]) for s in rl["per_seed"]] == [(4, 0), (4, 0)]
  assert [s["mcnemar_p"] for s in rl["per_seed"]] == [2 / 16, 2 / 16]
  assert rl["mcnemar_p"] == pytest.approx(2 / 2**8)  # (8, 0) pooled over the seeds
  assert rl["bootstrap"]["effect"] == pytest.approx(0.25)
  assert 0 < rl["bootstrap"]["low"] < 0.25 < rl["bootstrap"]["high"]
  assert rl["seed_test"]["mean_difference"] == pytest.approx(0.25)
  assert rl["seed_test"]["t_p"] == 0.0  # +0.25 in both seeds
  assert rl["seed_test"]["sign_flip_p"] == pytest.approx(0.5)  # 2 seeds: 2 / 4 at best
  sft = comparison(result, "id", "sft - init")  # one hand lost a seed
  assert (sft["n01"], sft["n10"], sft["mcnemar_p"]) == (0, 2, 0.5)
  versus = comparison(result, "id", "rl - sft")
  assert (versus["n01"], versus["n10"]) == (10, 0)
  assert versus["mcnemar_p"] == pytest.approx(2 / 2**10)
  pretrain = comparison(result, "id", "init - pretrain")  # other hands in seed 43
  assert [(s["n01"], s["n10"]) for s in pretrain["per_seed"]] == [(1, 0), (4, 3)]

  ood = comparison(result, "visual_ood", "rl - init")  # +1/16 and +2/16 of the hands
  # Student t with 1 dof (Cauchy): d = (1/16, 2/16), t = 3, two-sided p = 1 - 2 atan(3) / pi.
  assert ood["seed_test"]["t_p"] == pytest.approx(1 - 2 * math.atan(3) / math.pi)
  assert (ood["n01"], ood["n10"], ood["mcnemar_p"]) == (3, 0, 0.25)

  assert json.loads((runs / "report.json").read_text()) == json.loads(json.dumps(result))
  markdown = (runs / "report.md").read_text()
  assert "## id (32 hands per phase)" in markdown and "## visual_ood" in markdown
  assert "| rl - init | 25.0% → 50.0% | +25.0 [" in markdown
  assert "| 8 / 0 | 0.00781 | 0.125, 0.125 | 0 | 0.5 |" in markdown
  assert "run_44" in markdown


def test_report_alone_trains_nothing_and_pools_the_curves(mini_study, runs, monkeypatch,
                                                          capsys):
  def no_training(*args):
    raise AssertionError(f"--report alone trained: {args}")

  monkeypatch.setattr(mini_study, "run_once", no_training)
  assert mini_study.main(["--report", f"--out={runs}"]) == 0
  assert (runs / "report.md").exists() and (runs / "report.json").exists()
  seeds_md = (runs / "seeds.md").read_text()  # the benchmarks present, not id / rule_ood
  assert "visual_ood success" in seeds_md and "rule_ood" not in seeds_md
  assert (runs / "seeds.png").stat().st_size > 1000
  assert "Paired tests over 2 training seeds (42, 43)" in capsys.readouterr().out


def test_records_hold_every_finished_runs_per_hand_outcomes(mini_study, runs, tmp_path):
  """--records: what docs/mini_bench/ commits; its per-hand lines are the report's hands."""
  import gzip  # noqa: PLC0415

  dest = tmp_path / "records"
  assert mini_study.main(["--report", f"--out={runs}", f"--records={dest}"]) == 0
  assert json.loads((dest / "report.json").read_text()) == json.loads(
      (runs / "report.json").read_text())
  assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["run_42", "run_43"]
  for seed in (42, 43):
    with gzip.open(dest / f"run_{seed}" / "outcomes.jsonl.gz", "rt") as f:
      lines = [json.loads(line) for line in f]
    assert (dest / f"run_{seed}" / "summary.json").exists()
    assert len(lines) == len(END_DIRS) * len(SOLVED) * SEEDS_PER_EVAL * HANDS
    for name, by_seed in SOLVED.items():
      for phase, solved in by_seed[seed].items():
        got = {o["eval_seed"] * HANDS + o["sample_id"] for o in lines
               if o["phase"] == phase and o["benchmark"] == name and o["success"]}
        assert got == solved, (seed, name, phase)


def test_config_drives_the_trained_command(mini_study, tmp_path, monkeypatch):
  commands = []

  def fake_run(command, workdir):
    commands.append(command)
    return {"workdir": workdir, "wall_seconds": 1.0, "phase_seconds": {}, "scores": {}}

  monkeypatch.setattr(mini_study, "run_once", fake_run)
  out = tmp_path / "vl"
  assert mini_study.main(["--runs=1", "--config=configs/gp_vl_mini.py", f"--out={out}"]) == 0
  assert commands == [["jaxrl-gen", "experiment", "--config=configs/gp_vl_mini.py",
                       "--config.seed=42"]]
  assert mini_study.main_job() == ["jaxrl-gen", "experiment", "--config=configs/gp_mini.py"]


def test_report_refuses_unpaired_hands_and_empty_outs(mini_study, runs, tmp_path):
  write_logs(runs / "run_43" / "sft" / "eval" / "sft_step_10", "id", 43, set(), hand_seed=7)
  with pytest.raises(ValueError, match="hand"):
    mini_study.report(str(runs))
  with pytest.raises(SystemExit, match="no finished"):
    mini_study.report(str(tmp_path / "empty"))
