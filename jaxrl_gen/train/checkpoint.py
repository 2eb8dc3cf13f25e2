"""Orbax checkpoints of a run: the train state (parameters, optimizer state, step, RNG) and
the data iterator's position (per process), saved together under
`<workdir>/checkpoints/<step>`.

`Checkpointer.restore_or(state, iterator)` resumes from the newest checkpoint that restores,
or returns the state unchanged when there is none; the restored arrays get the shardings of
the given (abstract or concrete) state. A newer checkpoint that does not restore (truncated,
corrupt) is named in a one-line warning and moved to `<directory>.unusable/<step>` so the run
can write that step again; when none restores, `CheckpointError` (one line) and nothing moves.

Saves are asynchronous by default; a run killed mid-save leaves an unfinished temporary
directory that orbax ignores, so the last complete checkpoint wins, and the next run's start
removes it. Orbax deletes the checkpoints beyond `keep` only once the new one is committed
(its save-finalize step, after the write succeeded), so an older checkpoint never goes
before a newer one is complete. A save that fails (a full disk) is a one-line
`CheckpointError` naming the checkpoint and, for a full disk, the bytes it needs; it
surfaces at the next `save` or `wait` when it failed in the background, and its temporary
directory is removed. Orbax reports the first write that fails while the save's other writes
go on, so one of them may put that directory back; the next run's start removes it then. The
iterator position is taken when `save` is called (a snapshot), so a save that finishes in
the background still records the batches the saved state has seen. The directory may be
local or a URL such as gs:// (orbax handles both; gs:// needs gcsfs and google-cloud-storage
installed).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from jaxrl_gen import paths
from jaxrl_gen.models.hf_config import CheckpointError
from jaxrl_gen.train import restore

STATE, DATA = "state", "data"
UNUSABLE = ".unusable"  # the suffix of the directory unrestorable checkpoints move to
FULL_DISK = "No space left on device"  # how tensorstore words ENOSPC


class _IteratorSnapshot:
  """The iterator state at save time, in the form grain's orbax handler writes (a grain
  iterator's JSON state, or the bytes of any object with `get_state` / `set_state`, such as
  the RL episodes in flight)."""

  def __init__(self, iterator: Any):
    state = iterator.get_state()
    self._state = state if isinstance(state, bytes) else json.dumps(state, indent=2).encode()

  def get_state(self) -> bytes:
    return self._state


class Checkpointer:
  """The checkpoints of one run in `directory`, every `every` steps, the latest `keep` kept."""

  def __init__(self, directory: str | os.PathLike, *, every: int, keep: int,
               async_save: bool = True):
    if every < 1 or keep < 1:
      raise ValueError(f"checkpoint every={every} and keep={keep} must both be >= 1")
    self.every = every
    self.directory = epath.Path(paths.absolute(directory))  # orbax wants an absolute path
    # Orbax's threads log the traceback of a failed background save; `wait` reports it.
    self._quiet = contextlib.ExitStack()
    self._quiet.enter_context(restore.quiet_orbax())
    self._pending: tuple[int, int] | None = None  # (step, bytes) of the save in flight
    self.manager = ocp.CheckpointManager(
        self.directory,
        item_handlers={STATE: ocp.StandardCheckpointHandler(),
                       DATA: grain.checkpoint.CheckpointHandler()},
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            enable_async_checkpointing=async_save))
    self._remove_temporary("*")  # what a killed run or a failed save left

  @property
  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, iterator: grain.DatasetIterator, *,
           force: bool = False) -> bool:
    """Saves when `step` is a multiple of `every` (or `force`); True if a save started."""
    if step % self.every and not force:
      return False
    self.wait()  # a background save's failure is reported as that save's
    self._pending = (step, sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state)))
    with self._failures():
      return self.manager.save(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardSave(state),
          DATA: grain.checkpoint.CheckpointSave(_IteratorSnapshot(iterator))}), force=True)

  def restore_or(self, state: Any, iterator: grain.DatasetIterator) -> tuple[Any, int]:
    """(restored state, step) from the newest checkpoint that restores, or (state, 0)
    without one; the iterator is moved to the saved position."""
    target = jax.tree.map(_abstract, state)

    def restore_step(step: int):
      return self.manager.restore(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardRestore(target),
          DATA: grain.checkpoint.CheckpointRestore(iterator)}))[STATE]

    found = restore.newest_restorable(sorted(self.manager.all_steps(), reverse=True),
                                      restore_step, str(self.directory))
    if found is None:
      return state, 0
    restored, step, skipped = found
    if skipped:
      aside = self.directory.parent / (self.directory.name + UNUSABLE)
      restore.warn_skipped(str(self.directory), skipped, step, f" (moved to {aside})")
      self._set_aside([bad for bad, _ in skipped], aside)
    return restored, step

  def _set_aside(self, steps: list[int], aside: epath.Path):
    """Moves the step directories of `steps` under `aside` (process 0; the others wait), so
    the run can write those steps again."""
    if jax.process_index() == 0:
      aside.mkdir(parents=True, exist_ok=True)
      for step in steps:
        target = aside / str(step)
        if target.exists():  # set aside before, by an earlier resume
          target = aside / f"{step}.{time.strftime('%Y%m%dT%H%M%S')}"
        (self.directory / str(step)).rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("jaxrl_gen checkpoints set aside")
    self.manager.reload()

  def _remove_temporary(self, steps: str):
    """Removes the unfinished temporary directories of `steps` (a step, or a glob pattern of
    steps), on process 0. Orbax's own start-up cleanup runs in the background until the first
    save; this one is done when the run starts."""
    if jax.process_index() == 0:
      for tmp in self.directory.glob(f"{steps}{ocp.path.atomicity_types.TMP_DIR_SUFFIX}*"):
        tmp.rmtree()

  def wait(self):
    """Blocks until the save in flight is written; raises `CheckpointError` if it failed."""
    with self._failures():
      self.manager.wait_until_finished()
    self._pending = None

  @contextlib.contextmanager
  def _failures(self):
    """Turns a failure of the pending save into a one-line `CheckpointError`, with the
    temporary directory it left removed."""
    try:
      yield
    except Exception as e:  # noqa: BLE001  (orbax and tensorstore raise many types)
      step, nbytes = self._pending
      self._pending = None
      self._remove_temporary(str(step))
      self.manager.reload()
      kept = self.manager.latest_step()
      kept = (f"checkpoint {kept} is intact" if kept is not None
              else "no earlier checkpoint exists")
      if _full_disk(e):
        raise CheckpointError(
            f"checkpoint {step} in {self.directory}: no space left on device (a checkpoint "
            f"needs about {_megabytes(nbytes)} free); {kept}") from None
      raise CheckpointError(f"checkpoint {step} in {self.directory} could not be written "
                            f"({restore.reason(e)}); {kept}") from None

  def close(self):
    """Waits for the save in flight (`wait`), then releases orbax's threads."""
    try:
      self.wait()
      self.manager.close()  # after a failed save it would raise that failure once more
    finally:
      self._quiet.close()


def _full_disk(error: BaseException | None) -> bool:
  """Whether `error` or an exception it was raised from is ENOSPC."""
  while error is not None:
    if getattr(error, "errno", None) == errno.ENOSPC or FULL_DISK in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def _megabytes(nbytes: int) -> str:
  return f"{nbytes / 1e6:,.1f} MB"


def _abstract(x: Any) -> Any:
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def from_config(config, workdir: str) -> Checkpointer:
  """The run's checkpoints under `<workdir>/checkpoints`, as `config.checkpoint` says."""
  return Checkpointer(epath.Path(workdir) / "checkpoints", every=config.checkpoint.every,
                      keep=config.checkpoint.keep, async_save=config.checkpoint.async_save)
