"""The run skeleton SFT and RL share: the workdir's checks, the resume, the run files, the
metric writer with the run's running totals, the checkpoints and the progress bar.

    run_lib.check_workdir(config, workdir, allow_changes)   # before anything is built
    run = run_lib.Run(config, workdir, model_config, state, carried, total,
                      totals=("train/flops",))             # restores, then writes run files
    for step in range(run.start, total): ...; run.log(done, record); run.save(done, state, carried)
    run.finish()

A workdir changes only after its checkpoint restored: `config.json` and `model_config.json` are
written then (atomically), so a failed start leaves a run loadable as it was. Resuming with a
config that differs from the saved one is refused, naming the changed keys, except for the
keys a user changes on resume (`RESUMABLE`: more steps or updates, evaluation settings,
logging and checkpoint cadence), or with `allow_changes`; every accepted change is appended to
`<workdir>/config_changes.jsonl` with the step it took effect at.
"""

from __future__ import annotations

import json
import os
import time

import jax
from absl import logging
from etils import epath

from jaxrl_gen import metrics as metrics_lib, paths
from jaxrl_gen.train import checkpoint as checkpoint_lib
from jaxrl_gen.train import restore

CHANGES = "config_changes.jsonl"
# Keys (or section prefixes) a resumed run may change without `allow_changes`.
# Evaluation settings never change what trains; the experiment's settings are its phases'.
RESUMABLE = ("sft.steps", "ppo.num_updates", "ppo.flops_budget", "sft.eval_every", "sft.eval_batches",
             "sft.eval_episodes", "ppo.eval_every", "eval.", "log.", "checkpoint.every",
             "checkpoint.keep", "checkpoint.async_save", "experiment.")


class RunError(ValueError):
  """A run that cannot start or resume; the message is one line meant for the user."""


def _flat(tree, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _config_values(config) -> dict:
  return _flat(json.loads(config.to_json_best_effort()))


def changed_keys(config, saved: dict) -> dict[str, tuple]:
  """{key: (saved value, new value)} for every key whose value differs from `saved` (a run's
  config.json), keys only one side has included."""
  now, before = _config_values(config), _flat(saved)
  return {k: (before.get(k), now.get(k)) for k in sorted(set(now) | set(before))
          if before.get(k) != now.get(k)}


def _resumable(key: str) -> bool:
  return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def check_workdir(config, workdir: str, allow_changes: bool = False) -> dict[str, tuple]:
  """Before a run builds anything: the workdir must be writable, and a workdir with
  checkpoints must have been run with this config (up to `RESUMABLE` keys, or anything with
  `allow_changes`). Returns the accepted changes. Raises `RunError`."""
  root = epath.Path(workdir)
  try:
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".write_test.{os.getpid()}"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise RunError(f"workdir {workdir} is not writable ({e.strerror or e})") from None
  saved = root / restore.RUN_CONFIG
  if not (root / restore.CHECKPOINTS).exists() or not saved.exists():
    return {}
  try:
    changes = changed_keys(config, json.loads(saved.read_text()))
  except (OSError, ValueError) as e:
    raise RunError(f"{saved} is unreadable ({e}); move the workdir aside or fix the file"
                   ) from None
  refused = {k: v for k, v in changes.items() if not _resumable(k)}
  if refused and not allow_changes:
    listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in list(refused.items())[:6])
    more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
    raise RunError(f"workdir {workdir} was run with another config: {listed}{more}; resume "
                   "with the saved values, use a new --workdir, or pass "
                   "--allow_config_changes")
  return changes


def atomic_write(path: epath.Path, text: str):
  """Writes `path` through a temporary file renamed over it (a reader sees old or new)."""
  tmp = path.parent / f".{path.name}.tmp.{os.getpid()}"
  tmp.write_text(text)
  tmp.replace(path)


def write_run_files(config, model_config, workdir: str):
  """`<workdir>/config.json` (the run's whole config) and `model_config.json` (the shapes
  `restore.load_model` rebuilds the model with)."""
  root = epath.Path(workdir)  # a local path or gs://...
  root.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:
    atomic_write(root / restore.RUN_CONFIG,
                 config.to_json_best_effort(indent=2, sort_keys=True))
    atomic_write(root / restore.MODEL_CONFIG, model_config.to_json())


def last_value(path: str, key: str, step: int) -> float:
  """The latest `key` recorded at or before `step` (0 without one)."""
  if not step or not epath.Path(path).exists():
    return 0.0
  values = [r[key] for r in metrics_lib.read_jsonl(path) if key in r and r["step"] <= step]
  return float(values[-1]) if values else 0.0


class Run:
  """One run's checkpoints, metric writer, totals and progress (module docstring)."""

  def __init__(self, config, workdir: str, model_config, state, carried, total: int, *,
               totals: tuple[str, ...] = (), changes: dict | None = None,
               desc: str | None = None, job: metrics_lib.JobClock | None = None):
    self.config, self.workdir, self.total = config, workdir, total
    self.checkpoints = checkpoint_lib.from_config(config, workdir)
    self.state, self.start = self.checkpoints.restore_or(state, carried)
    if self.start:
      logging.warning("resumed from the checkpoint of step %d in %s", self.start, workdir)
    write_run_files(config, model_config, workdir)
    if changes and jax.process_index() == 0:
      paths.append_text(epath.Path(workdir) / CHANGES, "".join(
          json.dumps({"step": self.start, "key": key, "saved": before, "now": after,
                      "time": time.time()}) + "\n" for key, (before, after) in changes.items()))
    self.writer = metrics_lib.MetricWriter(workdir, resume_step=self.start,
                                           tensorboard=config.log.tensorboard)
    self.totals = {k: last_value(self.writer.path, k, self.start) for k in totals}
    self.bar = metrics_lib.progress(total, self.start, config.log.progress, desc=desc, job=job)

  def log(self, step: int, record: dict):
    self.writer.write(step, record)

  def save(self, step: int, state, carried, final: bool = False):
    """Checkpoints at the cadence, and at the run's last step (`total`, or `final`)."""
    self.checkpoints.save(step, state, carried, force=final or step == self.total)

  def finish(self):
    """The end of a run: the progress bar closed, the last checkpoint written, logs flushed."""
    self.bar.close()
    self.checkpoints.wait()
    self.checkpoints.close()
    self.writer.close()
