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
Saved models keep their own shapes and take `config.model`'s dtypes, remat and scanning and
`config.mesh`'s rules; parameters are restored straight into arrays sharded over `mesh`.
"""

from __future__ import annotations

import json
import os

import jax
from etils import epath
import orbax.checkpoint as ocp
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.models.config import ModelConfig
from jaxrl_gen.models.hf_config import CheckpointError

MODEL_CONFIG = "model_config.json"  # a run's model shapes, written by the trainer
RUN_CONFIG = "config.json"  # a run's whole config, written by the trainer
CHECKPOINTS = "checkpoints"
STATE_ITEM = "state"  # the train state's item in a run checkpoint (`train.checkpoint`)
PARAM_GROUPS = ("params", "frozen")  # the train state's parameter groups (`train.state`)
ACTOR = "model"  # the policy's subtree in an RL run's state (`train.learner.ActorCritic`)


def run_checkpoint(path: str) -> tuple[str, str] | None:
  """(run directory, step directory) when `path` is a run directory (its latest complete
  checkpoint) or one of its step directories; None otherwise."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, CHECKPOINTS)):
    workdir = path
    step = ocp.utils.checkpoint_steps(os.path.join(path, CHECKPOINTS))
    if not step:
      raise CheckpointError(f"run directory {path} has no complete checkpoint yet")
    step_dir = os.path.join(path, CHECKPOINTS, str(max(step)))
  elif os.path.isdir(os.path.join(path, STATE_ITEM)):
    workdir, step_dir = os.path.dirname(os.path.dirname(path)), path
  else:
    return None
  if not os.path.isfile(os.path.join(workdir, MODEL_CONFIG)):
    raise CheckpointError(f"run directory {workdir} has no {MODEL_CONFIG} (written by the "
                          "trainer since it records the model's shapes)")
  return workdir, step_dir


def describe(source: str) -> str:
  """What `load_model` will read from `source`, in words (for logs)."""
  if not source:
    return "random init"
  run = run_checkpoint(source)
  if run is not None:
    return f"run checkpoint {run[1]}"
  return f"checkpoint {os.path.abspath(source)}"


def tokenizer_source(config, source: str) -> str:
  """The tokenizer to encode for the model of `source`: config.text.tokenizer when set, else
  the saved model's own (its tokenizer.json; for a run directory, the tokenizer that run
  trained with), else '' (the embedded one)."""
  return config.text.tokenizer or saved_tokenizer(source)


def saved_tokenizer(source: str) -> str:
  """The directory of the tokenizer a saved model was trained with ('' = the embedded one)."""
  if not source:
    return ""
  if os.path.isfile(os.path.join(source, "tokenizer.json")):
    return source
  run = run_checkpoint(source) if os.path.isdir(source) else None
  if run is None or not os.path.isfile(os.path.join(run[0], RUN_CONFIG)):
    return ""
  with open(os.path.join(run[0], RUN_CONFIG)) as f:
    trained = json.load(f)
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
  if not os.path.isdir(source):
    raise CheckpointError(f"checkpoint {source}: no such directory")
  overrides = dict(dtype=model_config.dtype, param_dtype=model_config.param_dtype,
                   remat=model_config.remat, scan_layers=model_config.scan_layers,
                   rules=model_config.rules)
  run = run_checkpoint(source)
  if run is not None:
    return _load_run(*run, mesh=mesh, overrides=overrides)
  if params_io.is_params_dir(source):
    return params_io.load_params(source, mesh=mesh, **overrides)
  if os.path.isfile(os.path.join(source, "config.json")):
    compute = overrides.pop("dtype")
    return hf.load_pretrained(source, mesh=mesh, dtype=overrides.pop("param_dtype"),
                              compute_dtype=compute, **overrides)
  raise CheckpointError(f"{source} is none of: a run directory ({CHECKPOINTS}/), an orbax "
                        f"model ({MODEL_CONFIG}), a Hugging Face model (config.json)")


def _load_run(workdir: str, step_dir: str, *, mesh, overrides: dict) -> mllama.Model:
  """The parameters of a train-state checkpoint, restored into the run's model shapes."""
  with open(os.path.join(workdir, MODEL_CONFIG)) as f:
    model_config = ModelConfig.from_json(f.read()).replace(**overrides)
  graphdef, abstract = mllama.abstract(model_config)
  shardings = dict(nnx.to_flat_state(parallel.state_shardings(abstract, mesh,
                                                              model_config.rules)))
  wanted = {_name(path): jax.ShapeDtypeStruct(v.shape, v.dtype,
                                              sharding=shardings[path].get_value())
            for path, v in nnx.to_flat_state(abstract)}
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
  missing = sorted(set(wanted) - set(arrays))
  if missing:
    raise CheckpointError(f"{step_dir} lacks parameters of the model in {MODEL_CONFIG}, e.g. "
                          f"{missing[0]}")
  state = nnx.from_flat_state([(path, v.replace(arrays[_name(path)]))
                               for path, v in nnx.to_flat_state(abstract)])
  return nnx.merge(graphdef, state)


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
