"""`jaxrl-gen convert`: model checkpoints between Hugging Face, orbax, GGUF and train runs.

    jaxrl-gen convert --src=HF_DIR --dst=OUT                 # HF -> orbax (the default)
    jaxrl-gen convert --src=ORBAX_DIR --dst=OUT              # orbax -> HF safetensors
    jaxrl-gen convert --src=HF_DIR --dst=OUT --format=hf     # HF -> HF re-save (e.g. --dtype)
    jaxrl-gen convert --src=model.gguf --dst=OUT             # GGUF -> HF (dequantized)
    jaxrl-gen convert --src=RUN_DIR --dst=OUT                # a train run's policy -> HF

The source format is detected (a `.gguf` file; a `jaxrl-gen train` run directory, SFT or RL,
or one of its step directories: the policy of that checkpoint, never an RL value head;
`model_config.json`: ours; `config.json`: HF); `--format` picks the destination (default:
orbax from HF, HF from anything else). A GGUF file's or run's tokenizer (with its chat
template) is written beside the weights, so the output is a complete model directory for
transformers and for `--config.sft.init` / `ppo.init` / `eval --checkpoint`. Parameters stream
through the device mesh `--mesh` (sizes of data,fsdp,tensor; default all devices on fsdp), so
a model larger than one device's memory converts. No `--config` needed. `--src` and `--dst`
may be URLs (gs://...): orbax reads and writes them itself; a GGUF file or HF directory is
read through a local copy, and an HF destination (and any tokenizer) is written locally and
uploaded (`jaxrl_gen.paths`).
"""

from __future__ import annotations

import json
import sys

import ml_collections
from absl import flags, logging
from etils import epath

from jaxrl_gen import parallel, paths
from jaxrl_gen.models import gguf, hf, params_io
from jaxrl_gen.models.hf_config import CheckpointError
from jaxrl_gen.text import tokenizer as tokenizer_lib
from jaxrl_gen.train import restore

NEEDS_CONFIG = False

_SRC = flags.DEFINE_string("src", None, "Source: a HF model or orbax directory, a .gguf file "
                           "or a train run directory.")
_DST = flags.DEFINE_string("dst", None, "Destination directory (created).")
_FORMAT = flags.DEFINE_enum("format", None, ["hf", "orbax"],
                            "Destination format (default: orbax from HF, HF from the rest).")
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
  if epath.Path(dst).exists() and any(epath.Path(dst).iterdir()):
    raise CheckpointError(f"destination {dst} exists and is not empty")
  mesh = parallel.make_mesh(mesh_shape)
  tokenizer = None  # the tokenizer source written beside the weights (None: none)
  if src.endswith(".gguf"):
    src = paths.local_copy(src)  # the gguf package reads a local file
    model, tokenizer = gguf.load_pretrained(src, mesh=mesh, dtype=dtype or "float32"), src
  elif epath.Path(src).is_dir() and restore.run_checkpoint(src) is not None:
    model, tokenizer = _run_policy(src, mesh, dtype), restore.saved_tokenizer(src)
  elif params_io.is_params_dir(src):
    overrides = {"param_dtype": dtype} if dtype else {}
    model = params_io.load_params(src, mesh=mesh, **overrides)
  elif (epath.Path(src) / "config.json").is_file():
    model = hf.load_pretrained(paths.local_copy(src), mesh=mesh, dtype=dtype or "float32")
    fmt = fmt or "orbax"
  else:
    raise CheckpointError(f"{src} is neither a Hugging Face model (config.json) nor an orbax"
                          f" checkpoint ({params_io.CONFIG_FILE})")
  fmt = fmt or "hf"
  if fmt == "orbax":
    params_io.save_params(model, dst)
  with paths.staged(dst) as local:  # safetensors and tokenizers write local files
    if fmt == "hf":
      hf.save_pretrained(model, local, max_shard_bytes=max_shard_bytes)
    if tokenizer is not None and parallel.is_main_process():
      tokenizer_lib.load(tokenizer).save_pretrained(local)
  return fmt


def _run_policy(src: str, mesh, dtype: str | None):
  """The policy of a run directory's checkpoint, read by the trainer's own restore with the
  run's saved config (parameter dtype as trained unless `dtype` says otherwise)."""
  workdir, _ = restore.run_checkpoint(src)
  config = ml_collections.ConfigDict(
      json.loads((epath.Path(workdir) / restore.RUN_CONFIG).read_text()))
  if dtype:
    config.model.param_dtype = dtype
  return restore.load_model(config, src, mesh)


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
