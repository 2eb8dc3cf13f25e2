"""The TPU launcher's gcloud commands and the sweep's grid expansion (dry runs)."""

import subprocess
import sys

import pytest


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


@pytest.mark.parametrize("grid", ["novalue", "k=", "=1,2"])
def test_sweep_rejects_bad_axes(repo_root, grid):
  out = _tool(repo_root, "sweep.py", "--workdir=w", "--grid", grid, "--", "echo")
  assert out.returncode != 0 and "expected KEY=V1,V2" in out.stderr
