"""What the processes of a multi-process `generate` call agree on before they build one
global batch: the bucket shapes (from the global row count, longest prompt and image
count), where each process's rows sit (their global row indices, which key the draws) and
that every process asked for the same thing.

One small all-gather per call; a single process skips it.
"""

from __future__ import annotations

import dataclasses
import zlib

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Layout:
  """This process's rows within the global batch, and the global sizes.

  offset: the global index of this process's first row (the row count of the processes
    before it), so that row j here draws as row offset + j of the concatenated prompts.
  rows: the most rows any process has (each process pads its rows to this count).
  longest: the longest prompt over all processes.
  images: image slots per row over all processes (0: no process gave images).
  tile_shape: (tiles, channels, height, width) of the processes' pixel values.
  """
  offset: int
  rows: int
  longest: int
  images: int
  tile_shape: tuple[int, ...]


_FIELDS = 8  # ok, rows, longest, images, tiles, channels, height, width; then the digest


def digest(*settings) -> int:
  """A 31-bit checksum of the call's settings (static program settings, budget, EOS ids,
  buckets, key data), to check that all processes ask for the same program and draws."""
  text = repr(tuple(np.asarray(s).tolist() if isinstance(s, np.ndarray) else s
                    for s in settings))
  return zlib.crc32(text.encode()) & 0x7FFFFFFF


def agree(error: Exception | None, rows: int, longest: int, pixel_shape: tuple[int, ...] | None,
          settings: int) -> Layout:
  """Gathers every process's (rows, longest prompt, image shape, settings digest) and
  returns the layout they share. Raises on every process when any process rejected its
  arguments (`error`, re-raised there) or the settings differ, so no process is left
  waiting in the program's collectives."""
  images, tiles = (0, (0, 0, 0, 0)) if pixel_shape is None else (pixel_shape[1],
                                                                 tuple(pixel_shape[2:]))
  mine = np.array([error is None, rows, longest, images, *tiles, settings], np.int32)
  if jax.process_count() == 1:
    table = mine[None]
  else:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    table = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, _FIELDS + 1)
  if error is not None:
    raise error
  if not table[:, 0].all():
    bad = [int(p) for p in np.flatnonzero(table[:, 0] == 0)]
    raise ValueError(f"generate: process(es) {bad} rejected their arguments (see their error)")
  if len(set(table[:, _FIELDS].tolist())) > 1:
    raise ValueError("generate: the processes disagree on the sampling settings, key, EOS ids,"
                     " buckets or budget; every process must pass the same ones")
  with_images = table[table[:, 3] > 0]
  shapes = {tuple(r) for r in with_images[:, 4:_FIELDS].tolist()}
  if len(shapes) > 1:
    raise ValueError(f"generate: the processes' images have different (tiles, channels, height,"
                     f" width): {sorted(shapes)}")
  me = jax.process_index()
  return Layout(offset=int(table[:me, 1].sum()), rows=int(table[:, 1].max()),
                longest=int(table[:, 2].max()), images=int(table[:, 3].max()),
                tile_shape=shapes.pop() if shapes else ())
