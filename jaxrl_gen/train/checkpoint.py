"""Orbax checkpoints of a run: the train state (parameters, optimizer state, step, RNG) and
the data iterator's position (per process), saved together under
`<workdir>/checkpoints/<step>`.

`Checkpointer.restore_or(state, iterator)` resumes from the latest complete checkpoint, or
returns the state unchanged when there is none; the restored arrays get the shardings of the
given (abstract or concrete) state. Saves are asynchronous by default; a run killed mid-save
leaves an unfinished temporary directory that orbax ignores, so the last complete checkpoint
wins. The iterator position is taken when `save` is called (a snapshot), so a save that
finishes in the background still records the batches the saved state has seen. The directory
may be local or a URL such as gs:// (orbax handles both; gs:// needs gcsfs and
google-cloud-storage installed).
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

STATE, DATA = "state", "data"


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
    directory = os.fspath(directory)
    # Orbax wants an absolute path; a URL (gs://...) is one already, and abspath would turn
    # it into a local directory named "gs:".
    if "://" not in directory:
      directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        epath.Path(directory),
        item_handlers={STATE: ocp.StandardCheckpointHandler(),
                       DATA: grain.checkpoint.CheckpointHandler()},
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            enable_async_checkpointing=async_save))

  @property
  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, iterator: grain.DatasetIterator, *,
           force: bool = False) -> bool:
    """Saves when `step` is a multiple of `every` (or `force`); True if a save started."""
    if step % self.every and not force:
      return False
    return self.manager.save(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        DATA: grain.checkpoint.CheckpointSave(_IteratorSnapshot(iterator))}), force=True)

  def restore_or(self, state: Any, iterator: grain.DatasetIterator) -> tuple[Any, int]:
    """(restored state, step) from the latest checkpoint, or (state, 0) without one; the
    iterator is moved to the saved position."""
    step = self.manager.latest_step()
    if step is None:
      return state, 0
    target = jax.tree.map(_abstract, state)
    restored = self.manager.restore(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardRestore(target),
        DATA: grain.checkpoint.CheckpointRestore(iterator)}))
    return restored[STATE], step

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def _abstract(x: Any) -> Any:
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def from_config(config, workdir: str) -> Checkpointer:
  """The run's checkpoints under `<workdir>/checkpoints`, as `config.checkpoint` says."""
  return Checkpointer(epath.Path(workdir) / "checkpoints", every=config.checkpoint.every,
                      keep=config.checkpoint.keep, async_save=config.checkpoint.async_save)
