"""The device mesh ('data', 'fsdp', 'tensor'), logical-axis sharding rules, models born
sharded, and multi-host helpers.

Parameters carry logical axis names in their `logical_axes` metadata; a rules list (from
`config.mesh.rules`, MaxText style) maps each name to mesh axes. A name without a rule, or
mapped to None, is replicated.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
Rules = Sequence[tuple[str, Any]]


class ShardingError(ValueError):
  """A mesh or sharding that cannot work; the message is one line naming the culprit."""


def mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Resolves a mesh shape with at most one -1 ("the rest") against the device count."""
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(MESH_AXES):
    raise ShardingError(f"mesh shape {shape} must have {len(MESH_AXES)} entries {MESH_AXES}")
  if any(s == 0 or s < -1 for s in shape) or shape.count(-1) > 1:
    raise ShardingError(f"mesh shape {shape}: entries must be positive, with at most one -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ShardingError(f"mesh shape {shape} does not fit {num_devices} devices"
                          f" ({num_devices} is not a multiple of {known})")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise ShardingError(f"mesh shape {shape} needs {math.prod(shape)} devices, have {num_devices}")
  return shape


def make_mesh(shape: Sequence[int] = (-1, 1, 1),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ('data', 'fsdp', 'tensor') mesh with GSPMD (Auto) axes; -1 takes the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(shape, len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def platform(mesh: Mesh) -> str:
  """The platform of the mesh's devices ('cpu', 'gpu', 'tpu'): what 'auto' settings resolve
  against (a TPU topology's mesh compiled from a CPU host is 'tpu')."""
  return mesh.devices.flat[0].platform


def check_rules(rules: Rules) -> None:
  """Every rule maps a logical name to None, a mesh axis, or a tuple of mesh axes."""
  for name, target in rules:
    for axis in (target if isinstance(target, (tuple, list)) else (target,)):
      if axis is not None and axis not in MESH_AXES:
        raise ShardingError(f"sharding rule {name!r} -> {target!r}: {axis!r} is not a mesh axis"
                            f" {MESH_AXES}")


def logical_to_spec(axes: Sequence[str | None], rules: Rules) -> PartitionSpec:
  """Logical axis names -> PartitionSpec; a mesh axis is used at most once (first wins)."""
  table = dict((name, target) for name, target in rules)
  used, spec = set(), []
  for name in axes:
    target = table.get(name) if name is not None else None
    target = tuple(target) if isinstance(target, (tuple, list)) else (target,)
    target = tuple(a for a in target if a is not None and a not in used)
    used.update(target)
    spec.append(None if not target else target[0] if len(target) == 1 else target)
  return PartitionSpec(*spec)


def _shards(mesh_sizes: dict[str, int], entry) -> int:
  entry = entry if isinstance(entry, tuple) else (entry,)
  return math.prod(mesh_sizes.get(a, 1) for a in entry if a is not None)


def spec_for(shape: Sequence[int], axes: Sequence[str | None], mesh_sizes: dict[str, int],
             rules: Rules, name: str = "array") -> PartitionSpec:
  """The PartitionSpec of an array; a dimension its shards do not divide is an error."""
  spec = logical_to_spec(axes, rules)
  for dim, (size, entry) in enumerate(zip(shape, spec)):
    if entry is not None and size % _shards(mesh_sizes, entry):
      raise ShardingError(
          f"{name}: dimension {dim} ({axes[dim]}={size}) is not divisible by its"
          f" {_shards(mesh_sizes, entry)} shards over mesh axes {entry}; change config.mesh.shape"
          f" or config.mesh.rules")
  return spec


def sharding_for(shape: Sequence[int], axes: Sequence[str | None], mesh: Mesh, rules: Rules,
                 name: str = "array") -> NamedSharding:
  return NamedSharding(mesh, spec_for(shape, axes, dict(mesh.shape), rules, name))


def _path_name(path) -> str:
  return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _var_specs(state: nnx.State, mesh_sizes: dict[str, int], rules: Rules,
               wrap: Callable = lambda spec: spec) -> nnx.State:
  def one(path, var):
    shape = var.get_value().shape
    axes = var.get_metadata().get("logical_axes") or (None,) * len(shape)
    return var.replace(wrap(spec_for(shape, axes, mesh_sizes, rules, _path_name(path))))
  return jax.tree.map_with_path(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def state_shardings(state: nnx.State, mesh: Mesh, rules: Rules) -> nnx.State:
  """NamedShardings for an (abstract) `nnx.State`, from each Variable's `logical_axes`."""
  return _var_specs(state, dict(mesh.shape), rules, lambda spec: NamedSharding(mesh, spec))


def check_state(state: nnx.State, shape: Sequence[int], rules: Rules) -> None:
  """Raises ShardingError (naming the parameter) if the resolved mesh `shape` cannot shard it."""
  check_rules(rules)
  _var_specs(state, dict(zip(MESH_AXES, shape)), rules)


def _is_axes(x) -> bool:
  return isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)


def logical_shardings(tree: Any, axes_tree: Any, mesh: Mesh, rules: Rules) -> Any:
  """Shardings for a plain pytree of arrays given a matching tree of logical-axis tuples."""
  return jax.tree.map(lambda axes, x: sharding_for(x.shape, axes, mesh, rules), axes_tree, tree,
                      is_leaf=_is_axes)


def constrain(x: jax.Array, axes: Sequence[str | None], rules: Rules) -> jax.Array:
  """Sharding constraint on an activation when a mesh is set (`jax.set_mesh`); a no-op
  otherwise. Dimensions their shards do not divide (a batch of 1 in decoding) stay whole."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  sizes = dict(mesh.shape)
  spec = logical_to_spec(axes, rules)
  spec = PartitionSpec(*(None if e is None or size % _shards(sizes, e) else e
                         for size, e in zip(x.shape, spec)))
  return jax.lax.with_sharding_constraint(x, spec)


def create_sharded(make: Callable[[], nnx.Module], mesh: Mesh, rules: Rules) -> nnx.Module:
  """Builds `make()` with every parameter born sharded on `mesh` (no unsharded copy)."""
  graphdef, abstract = nnx.split(nnx.eval_shape(make))
  shardings = state_shardings(abstract, mesh, rules)

  def init():
    return nnx.split(make())[1]

  with jax.set_mesh(mesh):
    state = jax.jit(init, out_shardings=shardings)()
  return nnx.merge(graphdef, state)


def batch_shards(mesh: Mesh | None, rules: Rules) -> int:
  """How many ways the logical 'batch' axis is split on `mesh` (1 without a mesh)."""
  if mesh is None:
    return 1
  entry = logical_to_spec(("batch",), rules)[0]
  return _shards(dict(mesh.shape), entry)


def global_batch(local: Any, mesh: Mesh, rules: Rules, axes: Any) -> Any:
  """Assembles per-process host batches into global arrays sharded by logical `axes`
  (a tuple per leaf, e.g. ('batch', 'length')). Single-process: a sharded device_put."""
  def one(x, ax):
    spec = logical_to_spec(ax, rules)
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), np.asarray(x))
  return jax.tree.map(lambda ax, x: one(x, ax), axes, local, is_leaf=_is_axes)


def process_local_data(x: jax.Array) -> np.ndarray:
  """The part of `x` this process's devices hold, as one numpy array: the inverse of
  `global_batch` (`make_array_from_process_local_data`), which places a process's local
  data on its devices' slices in order. Single-process: the whole array."""
  shards = x.addressable_shards
  starts = [sorted({s.index[d].start or 0 for s in shards}) for d in range(x.ndim)]
  block = shards[0].data.shape
  out = np.empty(tuple(len(s) * n for s, n in zip(starts, block)), x.dtype)
  done = set()
  for s in shards:
    at = tuple(starts[d].index(s.index[d].start or 0) for d in range(x.ndim))
    if at not in done:  # replicas of a block hold the same data
      done.add(at)
      out[tuple(slice(i * n, (i + 1) * n) for i, n in zip(at, block))] = np.asarray(s.data)
  return out


def process_allgather(x: np.ndarray) -> np.ndarray:
  """[processes, *x.shape]: every process's `x` (the same shape on each), on every process."""
  x = np.asarray(x)
  if jax.process_count() == 1:
    return x[None]
  from jax.experimental import multihost_utils  # noqa: PLC0415
  return np.asarray(multihost_utils.process_allgather(x)).reshape(jax.process_count(), *x.shape)


def process_max(x: np.ndarray) -> np.ndarray:
  """The elementwise maximum of `x` over the processes (e.g. buffer shapes they must share)."""
  return process_allgather(x).max(axis=0)


def process_share(n: int) -> slice:
  """This process's contiguous block of `n` items split as evenly as possible, the first
  processes taking the extra ones (so with fewer items than processes the last go empty)."""
  count, me = jax.process_count(), jax.process_index()
  return slice(-(-n * me // count), -(-n * (me + 1) // count))


def allgather_texts(texts: Sequence[str]) -> list[str]:
  """Every process's strings, concatenated in process order (the counts may differ)."""
  if jax.process_count() == 1:
    return list(texts)
  data = [t.encode("utf-8") for t in texts]
  sizes = process_allgather(np.array([len(data), max(map(len, data), default=0)], np.int64))
  rows, width = int(sizes[:, 0].max()), max(int(sizes[:, 1].max()), 1)
  table = np.zeros((rows, width), np.uint8)
  lengths = np.zeros(rows, np.int64)
  for i, d in enumerate(data):
    table[i, :len(d)] = np.frombuffer(d, np.uint8)
    lengths[i] = len(d)
  tables, all_lengths = process_allgather(table), process_allgather(lengths)
  return [bytes(tables[p, i, :all_lengths[p, i]]).decode("utf-8")
          for p in range(len(sizes)) for i in range(int(sizes[p, 0]))]


def is_main_process() -> bool:
  return jax.process_index() == 0


def to_host(x: jax.Array) -> np.ndarray:
  """A (possibly multi-host sharded) array as one numpy array on every process."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jnp.asarray(x))


def initialize_distributed(mode: str = "none", coordinator_address: str = "",
                           num_processes: int = 0, process_id: int = -1) -> None:
  """Joins this process to a multi-host JAX run; call it before any other JAX call.

  mode 'none': a single-process run. 'auto': JAX detects the cluster (Cloud TPU pod slices,
  SLURM, ...) and the coordinator. 'manual': the coordinator address (e.g. '10.0.0.2:1234', or
  '127.0.0.1:PORT' for several CPU processes on one machine), the process count and this
  process's id are given.
  """
  if mode == "none":
    return
  if mode == "auto":
    jax.distributed.initialize()
  elif mode == "manual":
    if not coordinator_address or num_processes < 1 or not 0 <= process_id < num_processes:
      raise ShardingError(
          "--distributed=manual needs --coordinator_address, --num_processes >= 1 and"
          f" 0 <= --process_id < --num_processes (got {coordinator_address!r},"
          f" {num_processes}, {process_id})")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  else:
    raise ShardingError(f"distributed mode {mode!r}: must be 'none', 'auto' or 'manual'")
