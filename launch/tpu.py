"""Cloud TPU VM launcher: create a pod slice, ship this checkout to every worker, run a
`jaxrl-gen` command on all workers at once (multi-host JAX), follow logs, delete.

    python launch/tpu.py create --name=rl-v4 --zone=us-central2-b --type=v4-32 [--spot]
    python launch/tpu.py setup  --name=rl-v4 --zone=us-central2-b
    python launch/tpu.py run    --name=rl-v4 --zone=us-central2-b -- \\
        jaxrl-gen train --config=configs/gp.py:l,rl,llama-3.2-11b-vision \\
        --config.mesh.shape='(1,-1,1)' --config.model.remat=full --workdir=gs://b/gp_rl
    python launch/tpu.py logs   --name=rl-v4 --zone=us-central2-b [--worker=0]
    python launch/tpu.py delete --name=rl-v4 --zone=us-central2-b

Every subcommand prints the gcloud command(s) it runs; `--dry_run` only prints them. `setup`
sends `git archive HEAD` (committed files only) with `gcloud ... scp --worker=all` and
installs it in a virtual environment with `pip install -e ".[tpu]"` on every worker. `run`
starts the command on every worker (`--worker=all`) under nohup with `--distributed=auto`
added, so each process joins the same JAX run; its output goes to ~/jaxrl_gen.log per worker
and its exit status to ~/jaxrl_gen.exit when it returns.

A queued spot v5p slice (8 chips) for the 11B model, trained until done through preemptions.
The mesh shards the model's parameters over the chips (fsdp) and remat keeps the activations
small; `jaxrl-gen aot --config=... --topology=v5p:2x2x2` checks on any machine, before
launching, that the config fits the slice:

    python launch/tpu.py create --queued --spot --name=gp-vl --zone=us-east5-a \\
        --type=v5p-16 --version=v2-alpha-tpuv5 [--valid_until=6h]
    python launch/tpu.py status --queued --name=gp-vl --zone=us-east5-a   # until ACTIVE
    python launch/tpu.py setup  --name=gp-vl --zone=us-east5-a
    python launch/tpu.py run --until_done --queued --spot --type=v5p-16 \\
        --version=v2-alpha-tpuv5 --name=gp-vl --zone=us-east5-a -- \\
        jaxrl-gen train --config=configs/gp.py:vl,sft,llama-3.2-11b-vision \\
        --config.mesh.shape='(1,-1,1)' --config.model.remat=full --workdir=gs://b/gp_vl_sft
    python launch/tpu.py delete --queued --name=gp-vl --zone=us-east5-a

`create --queued` asks for the slice through a queued resource (`gcloud compute tpus
queued-resources`), which waits in the zone's queue until capacity is free instead of failing;
`--spot` or `--reserved` picks the tier and `--valid_until` (a duration) drops the request if
it is not granted by then. `status` describes the slice (the queued resource with `--queued`);
`delete --queued` deletes the queued resource and its slice.

`run --until_done` starts the command, then every `--poll_s` seconds asks gcloud for the
slice's state and worker 0 for the job's (running, or its exit status). After a preemption
(the slice PREEMPTED, TERMINATED or gone) it deletes what is left, creates the slice again
with the same create options, runs `setup` and starts the command again; a run resumes from
the last checkpoint in its workdir, which is why the workdir must outlive the slice (gs://).
It returns 0 when the command exits 0, and stops with the command's exit status when it fails
on a live slice (a failure is not retried) or after `--max_restarts` restarts.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Callable

REMOTE_DIR = "jaxrl_gen"
REMOTE_LOG = "~/jaxrl_gen.log"
REMOTE_EXIT = "~/jaxrl_gen.exit"
# The job's wrapper shell carries this as its $0, so `pgrep -f` finds it on the worker.
JOB_TAG = "jaxrl-gen-job"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What `job_state` reads from worker 0 (besides an exit status).
RUNNING, GONE = "running", "gone"
# Slice states beyond gcloud's own: the slice does not exist / gcloud could not tell.
NOT_FOUND, UNKNOWN = "NOT_FOUND", "UNKNOWN"
RECREATE_STATES = frozenset({"PREEMPTED", "TERMINATED", NOT_FOUND})
STOPPED_STATES = frozenset({"STOPPING", "STOPPED"})
# The steps of the `run --until_done` loop, as `decide` names them.
WAIT, CONFIRM, DONE, FAIL, RERUN, RECREATE = (
    "wait", "confirm", "done", "fail", "rerun", "recreate")
# A preempted VM shuts down for a while (its processes see SIGTERM and exit non-zero) before
# gcloud reports it PREEMPTED, so an ended job is looked at once more after this long.
SETTLE_S = 120

Runner = Callable[..., subprocess.CompletedProcess]


def gcloud(*args: str) -> list[str]:
  return ["gcloud", "compute", "tpus", "tpu-vm", *args]


def queued(*args: str) -> list[str]:
  return ["gcloud", "compute", "tpus", "queued-resources", *args]


def _project(a) -> list[str]:
  return [f"--project={a.project}"] if a.project else []


def ssh(name: str, zone: str, command: str, worker: str = "all",
        project: str | None = None) -> list[str]:
  extra = [f"--project={project}"] if project else []
  return gcloud("ssh", name, f"--zone={zone}", f"--worker={worker}", *extra,
                f"--command={command}")


def create_commands(a) -> list[list[str]]:
  if a.queued:
    cmd = queued("create", a.name, f"--node-id={a.name}", f"--zone={a.zone}",
                 f"--accelerator-type={a.type}", f"--runtime-version={a.version}")
    if a.valid_until:
      cmd.append(f"--valid-until-duration={a.valid_until}")
  else:
    cmd = gcloud("create", a.name, f"--zone={a.zone}", f"--accelerator-type={a.type}",
                 f"--version={a.version}")
  if a.spot:
    cmd.append("--spot")
  if a.reserved:
    cmd.append("--reserved")
  return [cmd + _project(a)]


def status_commands(a) -> list[list[str]]:
  tool = queued if a.queued else gcloud
  return [tool("describe", a.name, f"--zone={a.zone}", *_project(a))]


def archive_command(archive: str) -> list[str]:
  return ["git", "-C", REPO, "archive", "--format=tar.gz", "-o", archive, "HEAD"]


def setup_commands(a, archive: str) -> list[list[str]]:
  install = " && ".join([
      f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR}",
      f"tar xzf ~/{os.path.basename(archive)} -C {REMOTE_DIR}",
      f"cd {REMOTE_DIR} && python3 -m venv .venv && . .venv/bin/activate",
      "pip install -q --upgrade pip && pip install -q -e '.[tpu]'",
  ])
  return [gcloud("scp", archive, f"{a.name}:~/", f"--zone={a.zone}", "--worker=all",
                 *_project(a)),
          ssh(a.name, a.zone, install, project=a.project)]


def run_command(a, job: list[str]) -> list[list[str]]:
  if not job:
    raise SystemExit("run: give the command after '--', e.g. -- jaxrl-gen train --config=...")
  if job[0] == "jaxrl-gen" and not any(arg.startswith("--distributed") for arg in job):
    job = job + ["--distributed=auto"]
  # A wrapper shell records the exit status for `run --until_done` (and for a look by hand).
  wrapped = f"{shlex.join(job)}; echo $? > {REMOTE_EXIT}"
  remote = (f"cd {REMOTE_DIR} && . .venv/bin/activate && rm -f {REMOTE_EXIT} && "
            f"nohup bash -c {shlex.quote(wrapped)} {JOB_TAG} > {REMOTE_LOG} 2>&1 &")
  return [ssh(a.name, a.zone, remote, project=a.project)]


def logs_command(a) -> list[list[str]]:
  return [ssh(a.name, a.zone, f"tail -n {a.lines} {REMOTE_LOG}", worker=a.worker,
              project=a.project)]


def delete_commands(a) -> list[list[str]]:
  if a.queued:  # --force deletes the slice of the queued resource too
    return [queued("delete", a.name, f"--zone={a.zone}", "--quiet", "--force", *_project(a))]
  return [gcloud("delete", a.name, f"--zone={a.zone}", "--quiet", *_project(a))]


def describe_command(a) -> list[str]:
  """The slice's state (READY, PREEMPTED, ...) on stdout."""
  return gcloud("describe", a.name, f"--zone={a.zone}", "--format=value(state)", *_project(a))


def queued_describe_command(a) -> list[str]:
  """The queued resource's state (WAITING_FOR_RESOURCES, ACTIVE, ...) on stdout."""
  return queued("describe", a.name, f"--zone={a.zone}", "--format=value(state.state)",
                *_project(a))


def probe_command(a) -> list[str]:
  """Worker 0 prints `exit=N` once the job returned, else `running` or `gone`."""
  # The bracket keeps the pattern from matching this probe's own shell command line.
  alive = f"pgrep -f '[{JOB_TAG[0]}]{JOB_TAG[1:]}' > /dev/null"
  probe = (f"if [ -f {REMOTE_EXIT} ]; then echo exit=$(cat {REMOTE_EXIT}); "
           f"elif {alive}; then echo {RUNNING}; else echo {GONE}; fi")
  return ssh(a.name, a.zone, probe, worker="0", project=a.project)


def state_of(done: subprocess.CompletedProcess) -> str:
  """A resource's state from a `describe --format=value(...)` call: gcloud's word for it,
  NOT_FOUND, or UNKNOWN when gcloud could not tell (a network error, say)."""
  if done.returncode == 0:
    return done.stdout.strip() or UNKNOWN
  return NOT_FOUND if "NOT_FOUND" in (done.stderr or "") else UNKNOWN


def job_state(done: subprocess.CompletedProcess) -> int | str | None:
  """The job on worker 0 from the probe's output: its exit status, RUNNING, GONE (neither:
  the VM restarted under it), or None when the probe did not get through."""
  if done.returncode:
    return None
  for line in reversed(done.stdout.splitlines()):
    word = line.strip()
    if word in (RUNNING, GONE):
      return word
    if word.startswith("exit=") and word[len("exit="):].isdigit():
      return int(word[len("exit="):])
  return None  # an exit file caught half-written, or the probe's output lost


def decide(node: str, job: int | str | None, confirming: bool) -> str:
  """The next step of `run --until_done` from the slice's state (`state_of`) and the job's
  (`job_state`); `confirming`: the previous poll saw the job end on a READY slice."""
  if job == 0:
    return DONE
  if node in RECREATE_STATES:
    return RECREATE
  if node in STOPPED_STATES:  # someone stopped it: not for this loop to undo
    return FAIL
  if node != "READY" or job in (None, RUNNING):
    return WAIT
  if not confirming:  # an exit seen during a preemption's shutdown is no failure
    return CONFIRM
  return RERUN if job == GONE else FAIL


def provisioned(state: str) -> bool | None:
  """From a queued resource's state: True once ACTIVE (its slice is up), False when it can no
  longer become so, None while it waits in the queue or is being provisioned."""
  if state == "ACTIVE":
    return True
  if state in ("FAILED", "SUSPENDING", "SUSPENDED", "DELETING", NOT_FOUND):
    return False
  return None


def shell(cmd: list[str], capture: bool = False) -> subprocess.CompletedProcess:
  """Runs `cmd` here; with `capture`, its output is returned rather than shown."""
  return subprocess.run(cmd, capture_output=capture, text=True, check=False)


def _execute(commands: list[list[str]], run: Runner = shell, dry_run: bool = False) -> int:
  for cmd in commands:
    print("$ " + shlex.join(cmd), flush=True)
    if not dry_run:
      code = run(cmd).returncode
      if code:
        return code
  return 0


def setup(a, run: Runner = shell, dry_run: bool = False) -> int:
  """Ships `git archive HEAD` to every worker and installs it there."""
  with tempfile.TemporaryDirectory() as tmp:
    archive = os.path.join(tmp, "jaxrl_gen.tgz")
    return _execute([archive_command(archive), *setup_commands(a, archive)], run, dry_run)


def recreate(a, run: Runner = shell, sleep: Callable[[float], None] = time.sleep) -> bool:
  """Deletes what is left of a preempted slice and creates it again with the same options (a
  queued one waits in the queue); True once it is up."""
  _execute(delete_commands(a), run)  # fails where nothing is left to delete: fine
  if _execute(create_commands(a), run):
    return False
  if not a.queued:
    return True  # `tpu-vm create` returns once the slice is READY
  while (up := provisioned(state_of(run(queued_describe_command(a), capture=True)))) is None:
    sleep(a.poll_s)
  return up


def until_done(a, job: list[str], run: Runner = shell,
               sleep: Callable[[float], None] = time.sleep) -> int:
  """`run --until_done`: starts `job` and follows it through preemptions (see the module
  docstring); 0 once it exited 0, else non-zero."""
  code = _execute(run_command(a, job), run)
  if code:
    return code
  restarts, action, needs_setup = 0, WAIT, False
  while True:
    sleep(SETTLE_S if action == CONFIRM else a.poll_s)
    node = state_of(run(describe_command(a), capture=True))
    job_now = job_state(run(probe_command(a), capture=True)) if node == "READY" else None
    action = decide(node, job_now, confirming=action == CONFIRM)
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] slice {node}, job "
          f"{'unknown' if job_now is None else job_now}: {action}", flush=True)
    if action == DONE:
      return 0
    if action == FAIL:
      print(f"the job failed (slice {node}); its output: `launch/tpu.py logs`", file=sys.stderr)
      return job_now if isinstance(job_now, int) else 1
    if action not in (RERUN, RECREATE):
      continue
    if restarts == a.max_restarts:
      print(f"giving up after {restarts} restarts", file=sys.stderr)
      return 1
    restarts += 1
    if action == RECREATE:
      if not recreate(a, run, sleep):
        continue  # the next poll finds no slice and tries again
      needs_setup = True
    if needs_setup:
      needs_setup = setup(a, run) != 0
    if not needs_setup:
      _execute(run_command(a, job), run)  # a failed start shows as GONE on the next poll


def _slice_options(s: argparse.ArgumentParser, type_required: bool):
  """What `create` makes the slice with (and `run --until_done` makes it again with)."""
  s.add_argument("--type", required=type_required, help="accelerator type, e.g. v4-32, v5p-16")
  s.add_argument("--version", default="tpu-ubuntu2204-base",
                 help="TPU VM software version (v5p: v2-alpha-tpuv5)")
  s.add_argument("--queued", action="store_true", help="through a queued resource")
  tier = s.add_mutually_exclusive_group()
  tier.add_argument("--spot", action="store_true", help="a spot (preemptible) slice")
  tier.add_argument("--reserved", action="store_true", help="from the project's reservation")
  s.add_argument("--valid_until", default=None,
                 help="with --queued: drop the request if not granted within, e.g. 6h")


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="action", required=True)
  for action in ("create", "status", "setup", "run", "logs", "delete"):
    s = sub.add_parser(action)
    s.add_argument("--name", required=True, help="TPU VM name")
    s.add_argument("--zone", required=True, help="e.g. us-central2-b")
    s.add_argument("--project", default=None, help="GCP project (default: gcloud's)")
    s.add_argument("--dry_run", action="store_true", help="print the commands only")
    if action == "create":
      _slice_options(s, type_required=True)
    if action in ("status", "delete"):
      s.add_argument("--queued", action="store_true", help="the slice is a queued resource")
    if action == "logs":
      s.add_argument("--worker", default="0", help="worker index, or 'all'")
      s.add_argument("--lines", type=int, default=50)
    if action == "run":
      s.add_argument("--until_done", action="store_true",
                     help="follow the job; recreate the slice and rerun it after preemptions")
      s.add_argument("--poll_s", type=float, default=300, help="with --until_done")
      s.add_argument("--max_restarts", type=int, default=10, help="with --until_done")
      _slice_options(s, type_required=False)
      s.add_argument("job", nargs=argparse.REMAINDER, help="-- the command to run")
  return p


def main(argv: list[str] | None = None) -> int:
  p = parser()
  a = p.parse_args(argv)
  if getattr(a, "valid_until", None) and not a.queued:
    p.error("--valid_until needs --queued")
  if a.action == "create":
    return _execute(create_commands(a), dry_run=a.dry_run)
  if a.action == "status":
    return _execute(status_commands(a), dry_run=a.dry_run)
  if a.action == "setup":
    return setup(a, dry_run=a.dry_run)
  if a.action == "run":
    job = a.job[1:] if a.job[:1] == ["--"] else a.job
    if not a.until_done:
      return _execute(run_command(a, job), dry_run=a.dry_run)
    if not a.type:
      p.error("run --until_done needs the create options (--type, ...) to recreate the slice")
    if a.dry_run:
      code = _execute(run_command(a, job), dry_run=True)
      print(f"# then every {a.poll_s:g} s:")
      return code or _execute([describe_command(a), probe_command(a)], dry_run=True)
    return until_done(a, job)
  if a.action == "logs":
    return _execute(logs_command(a), dry_run=a.dry_run)
  return _execute(delete_commands(a), dry_run=a.dry_run)


if __name__ == "__main__":
  sys.exit(main())
