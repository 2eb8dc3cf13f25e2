"""Cloud TPU VM launcher: create a pod slice, ship this checkout to every worker, run a
`jaxrl-gen` command on all workers at once (multi-host JAX), follow logs, delete.

    python launch/tpu.py create --name=rl-v4 --zone=us-central2-b --type=v4-32 [--spot]
    python launch/tpu.py setup  --name=rl-v4 --zone=us-central2-b
    python launch/tpu.py run    --name=rl-v4 --zone=us-central2-b -- \\
        jaxrl-gen train --config=configs/gp.py:l,rl,llama-3.2-11b-vision --workdir=gs://b/gp_rl
    python launch/tpu.py logs   --name=rl-v4 --zone=us-central2-b [--worker=0]
    python launch/tpu.py delete --name=rl-v4 --zone=us-central2-b

Every subcommand prints the gcloud command(s) it runs; `--dry_run` only prints them. `setup`
sends `git archive HEAD` (committed files only) with `gcloud ... scp --worker=all` and
installs it in a virtual environment with `pip install -e ".[tpu]"` on every worker. `run`
starts the command on every worker (`--worker=all`) under nohup with `--distributed=auto`
added, so each process joins the same JAX run; its output goes to ~/jaxrl_gen.log per worker.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile

REMOTE_DIR = "jaxrl_gen"
REMOTE_LOG = "~/jaxrl_gen.log"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gcloud(*args: str) -> list[str]:
  return ["gcloud", "compute", "tpus", "tpu-vm", *args]


def ssh(name: str, zone: str, command: str, worker: str = "all",
        project: str | None = None) -> list[str]:
  extra = [f"--project={project}"] if project else []
  return gcloud("ssh", name, f"--zone={zone}", f"--worker={worker}", *extra,
                f"--command={command}")


def create_commands(a) -> list[list[str]]:
  cmd = gcloud("create", a.name, f"--zone={a.zone}", f"--accelerator-type={a.type}",
               f"--version={a.version}")
  if a.spot:
    cmd.append("--spot")
  if a.project:
    cmd.append(f"--project={a.project}")
  return [cmd]


def setup_commands(a, archive: str) -> list[list[str]]:
  extra = [f"--project={a.project}"] if a.project else []
  install = " && ".join([
      f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR}",
      f"tar xzf ~/{os.path.basename(archive)} -C {REMOTE_DIR}",
      f"cd {REMOTE_DIR} && python3 -m venv .venv && . .venv/bin/activate",
      "pip install -q --upgrade pip && pip install -q -e '.[tpu]'",
  ])
  return [gcloud("scp", archive, f"{a.name}:~/", f"--zone={a.zone}", "--worker=all", *extra),
          ssh(a.name, a.zone, install, project=a.project)]


def run_command(a, job: list[str]) -> list[list[str]]:
  if not job:
    raise SystemExit("run: give the command after '--', e.g. -- jaxrl-gen train --config=...")
  if job[0] == "jaxrl-gen" and not any(arg.startswith("--distributed") for arg in job):
    job = job + ["--distributed=auto"]
  remote = (f"cd {REMOTE_DIR} && . .venv/bin/activate && "
            f"nohup {shlex.join(job)} > {REMOTE_LOG} 2>&1 &")
  return [ssh(a.name, a.zone, remote, project=a.project)]


def logs_command(a) -> list[list[str]]:
  return [ssh(a.name, a.zone, f"tail -n {a.lines} {REMOTE_LOG}", worker=a.worker,
              project=a.project)]


def delete_commands(a) -> list[list[str]]:
  extra = [f"--project={a.project}"] if a.project else []
  return [gcloud("delete", a.name, f"--zone={a.zone}", "--quiet", *extra)]


def _execute(commands: list[list[str]], dry_run: bool) -> int:
  for cmd in commands:
    print("$ " + shlex.join(cmd), flush=True)
    if not dry_run:
      code = subprocess.call(cmd)
      if code:
        return code
  return 0


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="action", required=True)
  for action in ("create", "setup", "run", "logs", "delete"):
    s = sub.add_parser(action)
    s.add_argument("--name", required=True, help="TPU VM name")
    s.add_argument("--zone", required=True, help="e.g. us-central2-b")
    s.add_argument("--project", default=None, help="GCP project (default: gcloud's)")
    s.add_argument("--dry_run", action="store_true", help="print the commands only")
    if action == "create":
      s.add_argument("--type", required=True, help="accelerator type, e.g. v4-32, v5p-64")
      s.add_argument("--version", default="tpu-ubuntu2204-base", help="TPU VM software version")
      s.add_argument("--spot", action="store_true", help="a spot (preemptible) slice")
    if action == "logs":
      s.add_argument("--worker", default="0", help="worker index, or 'all'")
      s.add_argument("--lines", type=int, default=50)
    if action == "run":
      s.add_argument("job", nargs=argparse.REMAINDER, help="-- the command to run")
  return p


def main(argv: list[str] | None = None) -> int:
  a = parser().parse_args(argv)
  if a.action == "create":
    return _execute(create_commands(a), a.dry_run)
  if a.action == "setup":
    with tempfile.TemporaryDirectory() as tmp:
      archive = os.path.join(tmp, "jaxrl_gen.tgz")
      print(f"$ git archive --format=tar.gz -o {archive} HEAD", flush=True)
      subprocess.check_call(["git", "archive", "--format=tar.gz", "-o", archive, "HEAD"], cwd=REPO)
      return _execute(setup_commands(a, archive), a.dry_run)
  if a.action == "run":
    job = a.job[1:] if a.job[:1] == ["--"] else a.job
    return _execute(run_command(a, job), a.dry_run)
  if a.action == "logs":
    return _execute(logs_command(a), a.dry_run)
  return _execute(delete_commands(a), a.dry_run)


if __name__ == "__main__":
  sys.exit(main())
