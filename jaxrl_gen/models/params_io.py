"""Our own model checkpoint: `model_config.json` (the ModelConfig) + an orbax tree of the
parameters under `params/`. Restores straight into sharded arrays, on any mesh. The directory
may be local or a URL (gs://...): orbax and `etils.epath` read and write both."""

from __future__ import annotations

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from jaxrl_gen import parallel, paths
from jaxrl_gen.models import mllama
from jaxrl_gen.models.config import ModelConfig
from jaxrl_gen.models.hf_config import CheckpointError

CONFIG_FILE = "model_config.json"


def is_params_dir(path: str) -> bool:
  return (epath.Path(path) / CONFIG_FILE).is_file()


def save_params(model: mllama.Model, path: str) -> None:
  """Writes the model (every process calls it; orbax coordinates multi-host writes)."""
  path = epath.Path(paths.absolute(path))
  if parallel.is_main_process():
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(model.config.to_json())
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(path / "params", nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    ckpt.wait_until_finished()


def load_params(path: str, *, mesh: jax.sharding.Mesh | None = None, **overrides) -> mllama.Model:
  """The model saved by `save_params`; `overrides` replace ModelConfig fields (dtype, remat...)."""
  path = epath.Path(paths.absolute(path))
  if not is_params_dir(path):
    raise CheckpointError(f"no {CONFIG_FILE} in {path}")
  config = ModelConfig.from_json((path / CONFIG_FILE).read_text()).replace(**overrides)
  graphdef, abstract = mllama.abstract(config)
  if mesh is not None:
    shardings = parallel.state_shardings(abstract, mesh, config.rules)
  else:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)
  with ocp.StandardCheckpointer() as ckpt:
    restored = ckpt.restore(path / "params", nnx.to_pure_dict(target))
  nnx.replace_by_pure_dict(abstract, restored)
  return nnx.merge(graphdef, abstract)
