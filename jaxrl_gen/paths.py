"""Paths a user gives: a local path or a URL such as `gs://bucket/dir`, all through
`etils.epath` (which reads gs:// with the `[tpu]` extra's gcsfs and google-cloud-storage).

    paths.is_local(path)              # no URL scheme
    paths.absolute(path)              # a local path made absolute; a URL as it is
    paths.append_text(path, text)     # an object store cannot append: read and rewrite
    paths.local_copy(path)            # for readers of local files only (safetensors, GGUF,
                                      # tokenizers): a URL's file(s) copied to the cache
    with paths.staged(dst) as local:  # for writers of local files only: uploaded after

Orbax, TFDS, TensorBoard and JAX's compilation cache take URLs themselves; safetensors,
GGUF and transformers' tokenizers read and write local files, so a URL's files are copied
into `CACHE` first (and kept: a later read of the same file, same size, copies nothing). A
checkpoint that changes on GCS under the same size is not noticed: remove its copy. JAX-free.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable, Iterator

from absl import logging
from etils import epath

CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                     "jaxrl_gen", "remote")


def is_local(path: str | os.PathLike) -> bool:
  """Whether `path` is on this machine's file system (not a URL such as gs://)."""
  return "://" not in os.fspath(path)


def absolute(path: str | os.PathLike) -> str:
  """A local path made absolute (for orbax and messages); a URL as it is (abspath would turn
  gs://b/x into a local directory named "gs:")."""
  path = os.fspath(path)
  return os.path.abspath(path) if is_local(path) else path


def append_text(path: str | os.PathLike, text: str) -> None:
  """Appends `text` to the file (created if missing); on an object store, which cannot
  append, by writing the file again with `text` after what it held."""
  target = epath.Path(path)
  if is_local(path):
    with target.open("a") as f:
      f.write(text)
    return
  before = target.read_text() if target.exists() else ""
  target.write_text(before + text)


def local_copy(path: str | os.PathLike, keep: Callable[[str], bool] = lambda name: True
               ) -> str:
  """`path` as a local path: itself when local; for a URL, its copy under `CACHE` (a file, or
  a directory's files whose names `keep` accepts, not its subdirectories), made on first use
  and refreshed when a file's size differs."""
  path = os.fspath(path)
  if is_local(path):
    return path
  source = epath.Path(path)
  scheme, rest = path.split("://", 1)
  local = os.path.join(CACHE, scheme, rest.strip("/"))
  if source.is_dir():
    files = [f for f in source.iterdir() if f.is_file() and keep(f.name)]
    pairs = [(f, os.path.join(local, f.name)) for f in files]
  else:
    pairs = [(source, local)]
  stale = [(f, to) for f, to in pairs
           if not os.path.isfile(to) or os.path.getsize(to) != f.stat().length]
  if stale:
    logging.warning("copying %d file(s) of %s to %s", len(stale), path, local)
  for f, to in stale:
    os.makedirs(os.path.dirname(to), exist_ok=True)
    partial = f"{to}.partial.{os.getpid()}"
    f.copy(epath.Path(partial), overwrite=True)
    os.replace(partial, to)
  return local


@contextlib.contextmanager
def staged(dst: str | os.PathLike) -> Iterator[str]:
  """A local directory to write `dst` into: `dst` itself when local; for a URL a temporary
  directory whose files (and subdirectories) are uploaded to `dst` when the block ends
  without an error, then removed."""
  dst = os.fspath(dst)
  if is_local(dst):
    yield dst
    return
  local = tempfile.mkdtemp(prefix="jaxrl_gen_upload_")
  try:
    yield local
    for root, _, names in os.walk(local):
      relative = os.path.relpath(root, local)
      target = epath.Path(dst) if relative == "." else epath.Path(dst) / relative
      if names:
        target.mkdir(parents=True, exist_ok=True)
      for name in names:
        epath.Path(os.path.join(root, name)).copy(target / name, overwrite=True)
  finally:
    shutil.rmtree(local, ignore_errors=True)
