"""The TPU launcher's gcloud commands and its preemption loop (with a fake gcloud), and the
sweep's grid expansion (dry runs)."""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest

from launch import tpu


def _tool(repo_root, name, *args):
  result = subprocess.run([sys.executable, str(repo_root / "launch" / name), *args],
                          capture_output=True, text=True, timeout=60, cwd=repo_root)
  return result


def test_tpu_run_targets_every_worker_and_joins_one_jax_run(repo_root):
  out = _tool(repo_root, "tpu.py", "run", "--name=v4", "--zone=us-central2-b", "--dry_run",
              "--", "jaxrl-gen", "train", "--config=configs/gp.py:l,rl,tiny")
  assert out.returncode == 0, out.stderr
  line = out.stdout.strip()
  assert line.startswith("$ gcloud compute tpus tpu-vm ssh v4 --zone=us-central2-b --worker=all")
  assert "jaxrl-gen train --config=configs/gp.py:l,rl,tiny --distributed=auto" in line


def test_tpu_create_and_setup_commands(repo_root):
  out = _tool(repo_root, "tpu.py", "create", "--name=v4", "--zone=z", "--type=v4-32", "--spot",
              "--dry_run")
  assert out.stdout.strip() == ("$ gcloud compute tpus tpu-vm create v4 --zone=z"
                                " --accelerator-type=v4-32 --version=tpu-ubuntu2204-base --spot")
  out = _tool(repo_root, "tpu.py", "setup", "--name=v4", "--zone=z", "--dry_run")
  assert out.returncode == 0, out.stderr
  assert "scp" in out.stdout and "--worker=all" in out.stdout
  assert "pip install -q -e" in out.stdout and ".[tpu]" in out.stdout


def test_sweep_expands_the_grid_into_overrides_and_workdirs(repo_root):
  out = _tool(repo_root, "sweep.py", "--workdir=runs/s", "--grid", "env.verify_iter=1,3",
              "--grid", "ppo.clip=0.1,0.2", "--", "jaxrl-gen", "train",
              "--config=configs/gp.py:l,rl,tiny")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 4
  assert lines[1] == ("$ jaxrl-gen train --config=configs/gp.py:l,rl,tiny"
                      " --config.env.verify_iter=1 --config.ppo.clip=0.2"
                      " --workdir=runs/s/env.verify_iter=1,ppo.clip=0.2")


def test_sweep_runs_each_point_and_reports_failures(repo_root, tmp_path):
  marker = tmp_path / "ran"
  script = f"import sys; open({str(marker)!r}, 'a').write(sys.argv[-2] + '\\n')"
  out = _tool(repo_root, "sweep.py", f"--workdir={tmp_path}", "--grid", "a.b=1,2", "--run",
              "--", sys.executable, "-c", script)
  assert out.returncode == 0, out.stderr
  assert marker.read_text().split() == ["--config.a.b=1", "--config.a.b=2"]


def test_sweep_plots_each_runs_final_gain_over_a_baseline(repo_root, tmp_path):
  """--plot: a metric's last value in each grid point's run against the axis, as the gain
  over a baseline's cached evaluation (the verification ablation's figure)."""
  key = "eval/rule_ood/success"
  for verify_iter, values in ((1, [0.10, 0.12]), (3, [0.10, 0.15]), (10, [0.2])):
    run = tmp_path / f"env.verify_iter={verify_iter}"
    run.mkdir()
    run.joinpath("metrics.jsonl").write_text("".join(
        json.dumps({"step": i + 1, key: v, key + "_stderr": 0.03}) + "\n"
        for i, v in enumerate(values)) + json.dumps({"step": 9, "train/loss": 1.0}) + "\n")
  base = tmp_path / "init" / "eval"
  base.mkdir(parents=True)
  base.joinpath("results.json").write_text(json.dumps(
      {"eval": {}, "results": {key: 0.1, key + "_stderr": 0.04}}))
  out = _tool(repo_root, "sweep.py", f"--workdir={tmp_path}", "--grid",
              "env.verify_iter=1,3,5,10", "--plot", key, f"--baseline={tmp_path / 'init'}",
              "--", "echo")
  assert out.returncode == 0, out.stderr
  sweep = json.loads((tmp_path / "sweep.json").read_text())
  assert [p["env.verify_iter"] for p in sweep["points"]] == ["1", "3", "10"]  # 5: not run yet
  assert [round(p["gain"], 6) for p in sweep["points"]] == [0.02, 0.05, 0.1]
  assert sweep["points"][0]["stderr"] == pytest.approx(0.05)
  assert (tmp_path / "sweep.png").stat().st_size > 1000


@pytest.mark.parametrize("grid", ["novalue", "k=", "=1,2"])
def test_sweep_rejects_bad_axes(repo_root, grid):
  out = _tool(repo_root, "sweep.py", "--workdir=w", "--grid", grid, "--", "echo")
  assert out.returncode != 0 and "expected KEY=V1,V2" in out.stderr


def test_tpu_create_queued_and_delete_the_queued_resource(repo_root):
  out = _tool(repo_root, "tpu.py", "create", "--queued", "--spot", "--name=vp", "--zone=z",
              "--type=v5p-16", "--version=v2-alpha-tpuv5", "--valid_until=6h", "--project=p",
              "--dry_run")
  assert out.stdout.strip() == (
      "$ gcloud compute tpus queued-resources create vp --node-id=vp --zone=z"
      " --accelerator-type=v5p-16 --runtime-version=v2-alpha-tpuv5 --valid-until-duration=6h"
      " --spot --project=p")
  out = _tool(repo_root, "tpu.py", "create", "--queued", "--reserved", "--name=vp", "--zone=z",
              "--type=v5p-16", "--dry_run")
  assert out.stdout.strip().endswith("--runtime-version=tpu-ubuntu2204-base --reserved")
  out = _tool(repo_root, "tpu.py", "status", "--queued", "--name=vp", "--zone=z", "--dry_run")
  assert out.stdout.strip() == "$ gcloud compute tpus queued-resources describe vp --zone=z"
  out = _tool(repo_root, "tpu.py", "delete", "--queued", "--name=vp", "--zone=z", "--dry_run")
  assert out.stdout.strip() == ("$ gcloud compute tpus queued-resources delete vp --zone=z"
                                " --quiet --force")
  out = _tool(repo_root, "tpu.py", "delete", "--name=vp", "--zone=z", "--dry_run")
  assert out.stdout.strip() == "$ gcloud compute tpus tpu-vm delete vp --zone=z --quiet"


@pytest.mark.parametrize("args", [["--valid_until=6h"], ["--spot", "--reserved"]])
def test_tpu_create_rejects_options_that_do_not_go_together(repo_root, args):
  out = _tool(repo_root, "tpu.py", "create", "--name=v", "--zone=z", "--type=v4-8", *args,
              "--dry_run")
  assert out.returncode == 2 and out.stdout == ""


def test_tpu_run_until_done_needs_the_create_options(repo_root):
  out = _tool(repo_root, "tpu.py", "run", "--until_done", "--name=v", "--zone=z", "--dry_run",
              "--", "jaxrl-gen", "train")
  assert out.returncode == 2 and "--type" in out.stderr
  out = _tool(repo_root, "tpu.py", "run", "--until_done", "--type=v4-8", "--poll_s=60",
              "--name=v", "--zone=z", "--dry_run", "--", "jaxrl-gen", "train")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert lines[1:] == [
      "# then every 60 s:",
      "$ gcloud compute tpus tpu-vm describe v --zone=z '--format=value(state)'",
      "$ " + shlex.join(tpu.probe_command(tpu.parser().parse_args(
          ["run", "--name=v", "--zone=z"])))]


def _remote(command: list[str]) -> str:
  """The shell text a `gcloud ... ssh --command=...` runs on the worker."""
  flag = next(arg for arg in command if arg.startswith("--command="))
  return flag[len("--command="):]


def test_tpu_job_wrapper_leaves_the_exit_status_for_the_probe(tmp_path):
  """The remote start and probe commands, run here by bash in a fake worker home."""
  (tmp_path / tpu.REMOTE_DIR / ".venv" / "bin").mkdir(parents=True)
  (tmp_path / tpu.REMOTE_DIR / ".venv" / "bin" / "activate").write_text("")
  env = dict(os.environ, HOME=str(tmp_path))
  a = tpu.parser().parse_args(["run", "--name=v", "--zone=z"])
  probe = _remote(tpu.probe_command(a))

  def probe_says():
    done = subprocess.run(["bash", "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30)
    return tpu.job_state(done)

  marker = tmp_path / "go"
  job = ["sh", "-c", f"while [ ! -e {marker} ]; do sleep 0.05; done; echo 'it ran'; exit 3"]
  start = _remote(tpu.run_command(a, job)[0])
  subprocess.run(["bash", "-c", start], cwd=tmp_path, env=env, check=True, timeout=30)
  try:
    assert probe_says() == tpu.RUNNING
  finally:
    marker.touch()
  deadline = time.monotonic() + 30
  while probe_says() == tpu.RUNNING and time.monotonic() < deadline:
    time.sleep(0.05)
  assert probe_says() == 3
  assert "it ran" in (tmp_path / "jaxrl_gen.log").read_text()
  (tmp_path / "jaxrl_gen.exit").unlink()
  assert probe_says() == tpu.GONE


def _done(stdout: str = "", code: int = 0, stderr: str = "") -> subprocess.CompletedProcess:
  return subprocess.CompletedProcess([], code, stdout, stderr)


def test_tpu_states_from_gcloud_and_the_probe():
  assert tpu.state_of(_done("READY\n")) == "READY"
  not_found = "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource 'n' was not found"
  assert tpu.state_of(_done(code=1, stderr=not_found)) == tpu.NOT_FOUND
  assert tpu.state_of(_done(code=1, stderr="ERROR: network is unreachable")) == tpu.UNKNOWN
  assert tpu.job_state(_done("Warning: key\nexit=0\n")) == 0
  assert tpu.job_state(_done("exit=137\n")) == 137
  assert tpu.job_state(_done("running\n")) == tpu.RUNNING
  assert tpu.job_state(_done("gone\n")) == tpu.GONE
  assert tpu.job_state(_done("exit=\n")) is None  # the exit file caught half-written
  assert tpu.job_state(_done(code=255)) is None  # ssh did not get through
  assert tpu.provisioned("WAITING_FOR_RESOURCES") is None
  assert tpu.provisioned("ACTIVE") is True
  assert tpu.provisioned("FAILED") is False


@pytest.mark.parametrize("node, job, confirming, action", [
    ("READY", tpu.RUNNING, False, tpu.WAIT),
    ("READY", None, False, tpu.WAIT),
    ("READY", 0, False, tpu.DONE),
    ("READY", 1, False, tpu.CONFIRM),
    ("READY", 1, True, tpu.FAIL),
    ("READY", tpu.GONE, False, tpu.CONFIRM),
    ("READY", tpu.GONE, True, tpu.RERUN),
    ("PREEMPTED", None, True, tpu.RECREATE),
    ("TERMINATED", None, False, tpu.RECREATE),
    (tpu.NOT_FOUND, None, False, tpu.RECREATE),
    ("STOPPED", None, False, tpu.FAIL),
    ("CREATING", None, False, tpu.WAIT),
    (tpu.UNKNOWN, None, True, tpu.WAIT),
])
def test_tpu_until_done_decisions(node, job, confirming, action):
  assert tpu.decide(node, job, confirming) == action


class _FakeCloud:
  """gcloud and git for `until_done`: scripted answers to the slice's, the queued resource's
  and the job's state; every other command succeeds. Records what was run."""

  def __init__(self, nodes, jobs, queued=()):
    self.answers = {"node": list(nodes), "job": list(jobs), "queued": list(queued)}
    self.calls: list[str] = []

  def __call__(self, cmd, capture=False):
    kind = self.kind(cmd)
    self.calls.append(kind)
    if kind in self.answers:
      return self.answers[kind].pop(0)
    return _done()

  @staticmethod
  def kind(cmd):
    text = shlex.join(cmd)
    if "--format=value(state)" in text:
      return "node"
    if "--format=value(state.state)" in text:
      return "queued"
    if "ssh" in cmd and "--worker=0" in cmd:
      return "job"
    if "ssh" in cmd and "nohup" in text:
      return "start"
    return " ".join(cmd[3:5]) if cmd[0] == "gcloud" else cmd[0]


def _until_done_args(*extra):
  return tpu.parser().parse_args(["run", "--until_done", "--name=v", "--zone=z", "--type=v5p-16",
                                  "--poll_s=300", *extra])


def test_tpu_until_done_recreates_a_preempted_queued_slice_and_reruns(capsys):
  cloud = _FakeCloud(
      nodes=[_done("READY"), _done("PREEMPTED"), _done("READY")],
      jobs=[_done("running"), _done("exit=0")],
      queued=[_done("WAITING_FOR_RESOURCES"), _done("PROVISIONING"), _done("ACTIVE")])
  sleeps = []
  code = tpu.until_done(_until_done_args("--queued", "--spot"), ["jaxrl-gen", "train"],
                        run=cloud, sleep=sleeps.append)
  assert code == 0
  assert cloud.calls == [
      "start", "node", "job",  # running
      "node",  # preempted: the job is not asked
      "queued-resources delete", "queued-resources create", "queued", "queued", "queued",
      "git", "tpu-vm scp", "tpu-vm ssh", "start",  # setup, then the job again
      "node", "job"]  # exit=0
  assert sleeps == [300] * 5  # three polls, two waits in the queue
  assert "READY, job running: wait" in capsys.readouterr().out


def test_tpu_until_done_stops_on_a_real_failure_without_restarting():
  cloud = _FakeCloud(nodes=[_done("READY")] * 2, jobs=[_done("exit=2")] * 2)
  sleeps = []
  code = tpu.until_done(_until_done_args(), ["jaxrl-gen", "train"], run=cloud,
                        sleep=sleeps.append)
  assert code == 2
  assert cloud.calls == ["start", "node", "job", "node", "job"]
  assert sleeps == [300, tpu.SETTLE_S]


def test_tpu_until_done_takes_an_exit_during_a_preemption_for_the_preemption():
  cloud = _FakeCloud(nodes=[_done("READY"), _done(code=1, stderr="NOT_FOUND"), _done("READY")],
                     jobs=[_done("exit=143"), _done("exit=0")])
  code = tpu.until_done(_until_done_args("--spot"), ["jaxrl-gen", "train"], run=cloud,
                        sleep=lambda s: None)
  assert code == 0
  assert cloud.calls == ["start", "node", "job", "node", "tpu-vm delete", "tpu-vm create",
                         "git", "tpu-vm scp", "tpu-vm ssh", "start", "node", "job"]


def test_tpu_until_done_gives_up_after_max_restarts():
  cloud = _FakeCloud(nodes=[_done("PREEMPTED")] * 3, jobs=[])
  code = tpu.until_done(_until_done_args("--max_restarts=2"), ["jaxrl-gen", "train"], run=cloud,
                        sleep=lambda s: None)
  assert code == 1
  assert cloud.calls.count("tpu-vm create") == 2 and cloud.calls.count("start") == 3
