"""A model from wherever it was saved, for training, evaluation and RL alike.

    model = restore.load_model(config, source, mesh)

`source` is one of
  ''                   random init (seed config.seed) with the shapes of `config.model`;
  a run directory      a `jaxrl-gen train` workdir (`checkpoints/` and `model_config.json`):
                       the trained parameters of its latest checkpoint, or a step directory
                       `<workdir>/checkpoints/<step>` for that step (only the parameter groups
                       of the train state are read, never the optimizer moments);
  an orbax directory   `jaxrl-gen convert` output (`model_config.json` and `params/`);
  a HF directory       `config.json` and safetensors (`models.hf.load_pretrained`).
Each may be a local path or a URL (gs://...): orbax reads run and orbax directories there
itself, a Hugging Face directory's files are copied to a local cache first
(`paths.local_copy`). Saved models keep their own shapes and take `config.model`'s dtypes,
remat and scanning and `config.mesh`'s rules; parameters are restored straight into arrays
sharded over `mesh`. A saved model of other shapes than `config.model.preset`'s says so in
one warning line.

A run directory's checkpoint that does not restore (truncated, corrupt) is skipped for the
newest older one that does, with a one-line warning naming the step and why
(`newest_restorable`, which the trainer's resume shares); when none restores, or the source
is missing or holds no model, `load_model` raises a one-line `CheckpointError`.
"""

from __future__ import annotations

import contextlib
import json
import logging as py_logging
import os
import sys
from typing import Callable, Hashable, Sequence, TypeVar

import jax
from absl import logging
from etils import epath
import orbax.checkpoint as ocp
from flax import nnx

from jaxrl_gen import parallel, paths
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.models.config import ModelConfig
from jaxrl_gen.models.hf_config import CheckpointError

MODEL_CONFIG = "model_config.json"  # a run's model shapes, written by the trainer
RUN_CONFIG = "config.json"  # a run's whole config, written by the trainer
CHECKPOINTS = "checkpoints"
STATE_ITEM = "state"  # the train state's item in a run checkpoint (`train.checkpoint`)
PARAM_GROUPS = ("params", "frozen")  # the train state's parameter groups (`train.state`)
ACTOR = "model"  # the policy's subtree in an RL run's state (`train.learner.ActorCritic`)
REASON_CHARS = 200  # of a restore error quoted in a one-line message

K, T = TypeVar("K", bound=Hashable), TypeVar("T")
# Step directories of run directories found not to restore in this process: later lookups
# (`run_checkpoint`, `describe`) name the checkpoint that was really loaded.
_UNUSABLE: set[str] = set()


class _OrbaxErrors(py_logging.Filter):
  """Drops orbax's own error records (tracebacks, some logged from its threads): each failure
  they describe reaches the caller as an exception, which reports it in one line."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno < py_logging.ERROR or f"{os.sep}orbax{os.sep}" not in record.pathname


def _closed_loop(error_type: type, error: BaseException) -> bool:
  """Whether an uncaught error is tensorstore failing to call back into an asyncio loop orbax
  closed after one of its reads or writes failed: a late echo of that failure, which
  tensorstore reports as unraisable when it finishes its remaining operations."""
  return error_type is RuntimeError and str(error) == "Event loop is closed"


@contextlib.contextmanager
def quiet_orbax():
  """Within the block, orbax and tensorstore print nothing about a failed operation but the
  exception the caller gets (see `_OrbaxErrors`, `_closed_loop`)."""
  logger, errors = logging.get_absl_logger(), _OrbaxErrors()
  previous = sys.unraisablehook

  def unraisablehook(unraisable):
    if not _closed_loop(unraisable.exc_type, unraisable.exc_value):
      previous(unraisable)

  logger.addFilter(errors)
  sys.unraisablehook = unraisablehook
  try:
    yield
  finally:
    logger.removeFilter(errors)
    sys.unraisablehook = previous


def reason(error: BaseException) -> str:
  """An exception in one short line: its root cause's first line, cut to `REASON_CHARS`."""
  while error.__cause__ is not None:
    error = error.__cause__
  text = (str(error).strip().splitlines() or [type(error).__name__])[0]
  return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 3] + "..."


def newest_restorable(steps: Sequence[K], restore_step: Callable[[K], T], where: str
                      ) -> tuple[T, K, list[tuple[K, str]]] | None:
  """(restore_step(step), step, skipped) for the first of `steps` (newest first) that
  restores, `skipped` the (step, reason) of each one before it that did not; None without
  steps. Orbax logs no errors meanwhile. Errors raised by jaxrl_gen code (a saved state this
  version refuses) are verdicts on every step alike and pass through. Raises
  `CheckpointError` naming `where` when no step restores."""
  skipped = []
  for step in steps:
    try:
      with quiet_orbax():
        return restore_step(step), step, skipped
    except Exception as e:  # orbax, tensorstore and grain raise many types
      if type(e).__module__.split(".")[0] == "jaxrl_gen":
        raise
      skipped.append((step, reason(e)))
  if skipped:
    failures = "; ".join(f"checkpoint {step}: {why}" for step, why in skipped)
    raise CheckpointError(f"no checkpoint in {where} restores ({failures})")
  return None


def warn_skipped(where: str, skipped: list[tuple[Hashable, str]], used: Hashable,
                 then: str = ""):
  """One warning line per checkpoint `newest_restorable` skipped, naming the one used."""
  for step, why in skipped:
    logging.warning("checkpoint %s in %s is incomplete or corrupt (%s); using checkpoint %s%s",
                    step, where, why, used, then)


def _run_steps(path: str) -> tuple[str, list[str]] | None:
  """(run directory, step directories to try, newest first) when `path` is a run directory
  (its complete checkpoints not known to be unusable) or one of its step directories (that
  one alone); None otherwise. A local path or a URL (gs://...)."""
  path = paths.absolute(path).rstrip("/")
  root = epath.Path(path)
  if (root / CHECKPOINTS).is_dir():
    workdir = path
    steps = ocp.utils.checkpoint_steps(root / CHECKPOINTS)
    step_dirs = [d for d in (f"{path}/{CHECKPOINTS}/{s}"
                             for s in sorted(steps, reverse=True)) if d not in _UNUSABLE]
    if not step_dirs:
      raise CheckpointError(f"run directory {path} has no complete checkpoint yet")
  elif (root / STATE_ITEM).is_dir():
    workdir, step_dirs = str(root.parent.parent), [path]
  else:
    return None
  if not (epath.Path(workdir) / MODEL_CONFIG).is_file():
    raise CheckpointError(f"run directory {workdir} has no {MODEL_CONFIG} (written by the "
                          "trainer since it records the model's shapes)")
  return workdir, step_dirs


def run_checkpoint(path: str) -> tuple[str, str] | None:
  """(run directory, step directory) when `path` is a run directory (its latest complete
  checkpoint, skipping those found unusable) or one of its step directories; None
  otherwise."""
  run = _run_steps(path)
  return None if run is None else (run[0], run[1][0])


def describe(source: str) -> str:
  """What `load_model` will read (or, once it has, read) from `source`, in words."""
  if not source:
    return "random init"
  run = run_checkpoint(source)
  if run is not None:
    return f"run checkpoint {run[1]}"
  return f"checkpoint {paths.absolute(source)}"


def tokenizer_source(config, source: str) -> str:
  """The tokenizer to encode for the model of `source`: config.text.tokenizer when set, else
  the saved model's own (its tokenizer.json; for a run directory, the tokenizer that run
  trained with), else '' (the embedded one)."""
  return config.text.tokenizer or saved_tokenizer(source)


def saved_tokenizer(source: str) -> str:
  """The directory of the tokenizer a saved model was trained with ('' = the embedded one)."""
  if not source:
    return ""
  if (epath.Path(source) / "tokenizer.json").is_file():
    return source
  run = run_checkpoint(source) if epath.Path(source).is_dir() else None
  if run is None or not (epath.Path(run[0]) / RUN_CONFIG).is_file():
    return ""
  trained = json.loads((epath.Path(run[0]) / RUN_CONFIG).read_text())
  return (trained.get("text", {}).get("tokenizer")
          or saved_tokenizer(trained.get("sft", {}).get("init", "")))


def load_with_processor(config, source: str, mesh: jax.sharding.Mesh):
  """(model, processor) of `source`: the model as `load_model` gives it and the processor
  that encodes for it (its own tokenizer unless config.text.tokenizer says otherwise)."""
  from jaxrl_gen.text import processor as processor_lib  # noqa: PLC0415

  model = load_model(config, source, mesh)
  return model, processor_lib.from_config(config, model.config,
                                          tokenizer_source(config, source))


def load_model(config, source: str, mesh: jax.sharding.Mesh) -> mllama.Model:
  """The model of `source` (see the module docstring), sharded over `mesh`."""
  from jaxrl_gen.models import hf, params_io  # noqa: PLC0415  (HF import pulls in more)

  model_config = presets.from_config(config.model, config.mesh, parallel.platform(mesh))
  if not source:
    return mllama.create(model_config, mesh=mesh, seed=config.seed)
  if not epath.Path(source).exists():
    raise CheckpointError(f"checkpoint {source}: no such directory")
  if not epath.Path(source).is_dir():
    raise CheckpointError(f"checkpoint {source} is a file; a model is a directory")
  overrides = dict(dtype=model_config.dtype, param_dtype=model_config.param_dtype,
                   remat=model_config.remat, scan_layers=model_config.scan_layers,
                   rules=model_config.rules)
  run = _run_steps(source)
  if run is not None:
    model = _load_run(*run, mesh=mesh, overrides=overrides)
  elif params_io.is_params_dir(source):
    model = params_io.load_params(source, mesh=mesh, **overrides)
  elif (epath.Path(source) / "config.json").is_file():
    compute = overrides.pop("dtype")  # safetensors reads local files: a URL's are copied
    model = hf.load_pretrained(paths.local_copy(source), mesh=mesh,
                               dtype=overrides.pop("param_dtype"), compute_dtype=compute,
                               **overrides)
  else:
    raise CheckpointError(f"{source} is none of: a run directory ({CHECKPOINTS}/), an orbax "
                          f"model ({MODEL_CONFIG}), a Hugging Face model (config.json)")
  if _shapes(model.config) != _shapes(model_config):
    logging.warning("%s holds a %s, not config.model.preset=%r: using the saved model", source,
                    model_name(model.config), config.model.preset)
  return model


def model_name(model_config: ModelConfig) -> str:
  """A model's preset name and size in words, e.g. "tiny-text model (4 layers, hidden 128,
  2.1M parameters)"; a shape no preset has is "model (...)"."""
  same = [name for name in presets.NAMES if _shapes(presets.get(name)) == _shapes(model_config)]
  text = model_config.text
  size = (f"{text.num_layers} layers, hidden {text.hidden_size}, "
          f"{mllama.param_count(model_config) / 1e6:.1f}M parameters")
  return f"{same[0]} model ({size})" if same else f"model ({size})"


def _shapes(model_config: ModelConfig) -> tuple:
  """What makes two models the same network (not token ids, RoPE or numerics)."""
  t, v = model_config.text, model_config.vision
  return ((t.vocab_size, t.hidden_size, t.num_layers, t.num_heads, t.num_kv_heads, t.head_dim,
           t.intermediate_size, tuple(t.cross_attention_layers)),
          v and (v.hidden_size, v.num_layers, v.num_global_layers, v.num_heads,
                 v.intermediate_size, v.image_size, v.patch_size))


def _load_run(workdir: str, step_dirs: list[str], *, mesh, overrides: dict) -> mllama.Model:
  """The parameters of the newest of `step_dirs` that restores, in the run's model shapes."""
  model_config = ModelConfig.from_json(
      (epath.Path(workdir) / MODEL_CONFIG).read_text()).replace(**overrides)
  graphdef, abstract = mllama.abstract(model_config)
  shardings = dict(nnx.to_flat_state(parallel.state_shardings(abstract, mesh,
                                                              model_config.rules)))
  wanted = {_name(path): jax.ShapeDtypeStruct(v.shape, v.dtype,
                                              sharding=shardings[path].get_value())
            for path, v in nnx.to_flat_state(abstract)}
  where = step_dirs[0].rsplit("/", 1)[0]
  steps = {d.rsplit("/", 1)[1]: d for d in step_dirs}
  arrays, used, skipped = newest_restorable(
      list(steps), lambda step: _restore_params(steps[step], wanted), where)
  _UNUSABLE.update(steps[step] for step, _ in skipped)
  warn_skipped(where, skipped, used)
  missing = sorted(set(wanted) - set(arrays))
  if missing:
    raise CheckpointError(f"{steps[used]} lacks parameters of the model in {MODEL_CONFIG}, "
                          f"e.g. {missing[0]}")
  state = nnx.from_flat_state([(path, v.replace(arrays[_name(path)]))
                               for path, v in nnx.to_flat_state(abstract)])
  return nnx.merge(graphdef, state)


def _restore_params(step_dir: str, wanted: dict) -> dict:
  """{parameter name: array} of the parameters in `wanted` a train-state checkpoint holds."""
  item = epath.Path(step_dir) / STATE_ITEM
  handler = ocp.PyTreeCheckpointHandler()  # the item alone: a Checkpointer wants step metadata
  try:
    saved = handler.metadata(item).tree
    # An RL run saves the policy and its value head as 'model.*' and 'value.*'.
    prefix = (ACTOR,) if any(ACTOR in (saved.get(g) or {}) for g in PARAM_GROUPS) else ()
    target = {group: _nest(prefix, _select(_descend(saved.get(group) or {}, prefix), wanted, ()))
              for group in PARAM_GROUPS}
    restored = handler.restore(item, args=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True))
  finally:
    handler.close()
  arrays = {}
  for group in PARAM_GROUPS:
    _flatten(_descend(restored[group], prefix), (), arrays)
  return arrays


def _descend(tree: dict, prefix: tuple) -> dict:
  for key in prefix:
    tree = tree.get(key) or {}
  return tree


def _nest(prefix: tuple, tree: dict) -> dict:
  for key in reversed(prefix):
    tree = {key: tree} if tree else {}
  return tree


def _name(path: tuple) -> str:
  """A parameter's dotted path; orbax stores a variable as {'value': array}, dropped here."""
  if path and path[-1] == "value":
    path = path[:-1]
  return ".".join(map(str, path))


def _select(saved: dict, wanted: dict, prefix: tuple) -> dict:
  """The subtree of `saved` whose leaves are model parameters, as restore targets."""
  out = {}
  for key, value in saved.items():
    path = prefix + (key,)
    if isinstance(value, dict):
      sub = _select(value, wanted, path)
      if sub:
        out[key] = sub
    elif _name(path) in wanted:
      out[key] = wanted[_name(path)]
  return out


def _flatten(tree: dict, prefix: tuple, out: dict):
  for key, value in tree.items():
    if isinstance(value, dict):
      _flatten(value, prefix + (key,), out)
    else:
      out[_name(prefix + (key,))] = value
