"""`jaxrl-gen convert`: Hugging Face model directories <-> our orbax parameter checkpoints.

    jaxrl-gen convert --src=HF_DIR --dst=OUT                 # HF -> orbax (the default)
    jaxrl-gen convert --src=ORBAX_DIR --dst=OUT              # orbax -> HF safetensors
    jaxrl-gen convert --src=HF_DIR --dst=OUT --format=hf     # HF -> HF re-save (e.g. --dtype)

The source format is detected (`config.json`: HF; `model_config.json`: ours); `--format`
picks the destination (default: the other one). Parameters stream through the device mesh
`--mesh` (sizes of data,fsdp,tensor; default all devices on fsdp), so a model larger than
one device's memory converts. No `--config` needed.
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from jaxrl_gen import parallel
from jaxrl_gen.models import hf, params_io
from jaxrl_gen.models.hf_config import CheckpointError

NEEDS_CONFIG = False

_SRC = flags.DEFINE_string("src", None, "Source directory (HF model or orbax checkpoint).")
_DST = flags.DEFINE_string("dst", None, "Destination directory (created).")
_FORMAT = flags.DEFINE_enum("format", None, ["hf", "orbax"],
                            "Destination format (default: the other format than the source's).")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16", "float16"],
                           "Parameter dtype of the output (default: as loaded; float32 from HF).")
_MESH = flags.DEFINE_list("mesh", ["1", "-1", "1"],
                          "Mesh sizes of data,fsdp,tensor (-1: the rest).")
_SHARD_GB = flags.DEFINE_float("max_shard_gb", 5.0, "Largest safetensors file written, in GB.")


def _fail(message: str):
  print(f"jaxrl-gen convert: {message}", file=sys.stderr)
  sys.exit(2)


def convert(src: str, dst: str, fmt: str | None = None, dtype: str | None = None,
            mesh_shape=(1, -1, 1), max_shard_bytes: int = 5 << 30) -> str:
  """Converts `src` into `dst`; returns the destination format."""
  if os.path.exists(dst) and os.listdir(dst):
    raise CheckpointError(f"destination {dst} exists and is not empty")
  mesh = parallel.make_mesh(mesh_shape)
  if params_io.is_params_dir(src):
    overrides = {"param_dtype": dtype} if dtype else {}
    model, fmt = params_io.load_params(src, mesh=mesh, **overrides), fmt or "hf"
  elif os.path.isfile(os.path.join(src, "config.json")):
    model, fmt = hf.load_pretrained(src, mesh=mesh, dtype=dtype or "float32"), fmt or "orbax"
  else:
    raise CheckpointError(f"{src} is neither a Hugging Face model (config.json) nor an orbax"
                          f" checkpoint ({params_io.CONFIG_FILE})")
  if fmt == "hf":
    hf.save_pretrained(model, dst, max_shard_bytes=max_shard_bytes)
  else:
    params_io.save_params(model, dst)
  return fmt


def main(config, workdir):
  del config, workdir
  logging.set_verbosity(logging.WARNING)  # orbax narrates every file at INFO
  if not _SRC.value or not _DST.value:
    _fail("--src and --dst are required")
  try:
    mesh_shape = tuple(int(s) for s in _MESH.value)
  except ValueError:
    _fail(f"--mesh={','.join(_MESH.value)}: expected integers such as 1,-1,1")
  try:
    fmt = convert(_SRC.value, _DST.value, _FORMAT.value, _DTYPE.value, mesh_shape,
                  int(_SHARD_GB.value * (1 << 30)))
  except (CheckpointError, parallel.ShardingError) as e:
    _fail(str(e))
  print(f"wrote {fmt} checkpoint to {_DST.value}")
