"""Hugging Face safetensors checkpoints <-> `Model`.

`load_pretrained` reads `config.json` and one or several (indexed) safetensors files,
checks every tensor's name and shape against the model before reading any data, then fills
each parameter shard by shard: a device's block is sliced straight out of the memory-mapped
file, so host memory holds one shard at a time. Both Mllama namings are accepted
(`language_model.model.*` as on the hub, `model.language_model.*` as in newer transformers).

`save_pretrained` writes the hub naming, which transformers loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from jaxrl_gen import parallel
from jaxrl_gen.models.config import ModelConfig
from jaxrl_gen.models.hf_config import CheckpointError, hf_config, read_config
from jaxrl_gen.models import mllama
from jaxrl_gen.models.mllama import Model

INDEX = "model.safetensors.index.json"


@dataclasses.dataclass(frozen=True)
class TensorMap:
  """How one of our parameters is made of HF tensors.

  The HF tensor (shape `hf_shape`) is viewed as the concatenation of `groups` (each HF dim
  split into sizes), and `ours = view.transpose(perm)`. A stacked parameter takes one HF
  tensor per layer (`names`), along our leading dimension.
  """
  names: tuple[str, ...]
  stacked: bool
  hf_shape: tuple[int, ...]
  groups: tuple[tuple[int, ...], ...]
  perm: tuple[int, ...]


def _linear(names, stacked, in_shape, out_shape) -> TensorMap:
  n_in, n_out = len(in_shape), len(out_shape)
  return TensorMap(names, stacked, (math.prod(out_shape), math.prod(in_shape)),
                   (tuple(out_shape), tuple(in_shape)),
                   tuple(range(n_out, n_out + n_in)) + tuple(range(n_out)))


def _copy(names, stacked, shape, hf_shape=None) -> TensorMap:
  if hf_shape is None or tuple(hf_shape) == tuple(shape):
    return TensorMap(names, stacked, tuple(shape), tuple((d,) for d in shape),
                     tuple(range(len(shape))))
  # one leading dim kept, the rest flattened into HF's second dim (tile embeddings)
  return TensorMap(names, stacked, tuple(hf_shape), ((shape[0],), tuple(shape[1:])),
                   tuple(range(len(shape))))


_TILE_TABLES = ("vision_model.gated_positional_embedding.tile_embedding",
                "vision_model.pre_tile_positional_embedding.embedding",
                "vision_model.post_tile_positional_embedding.embedding")


def tensor_maps(config: ModelConfig, state: nnx.State) -> dict[str, TensorMap]:
  """Our parameter path -> its HF tensors, in the hub naming."""
  mllama = config.vision is not None
  text = "language_model.model." if mllama else "model."
  head = "language_model.lm_head.weight" if mllama else "lm_head.weight"
  repeats, kinds = config.text.layer_pattern()
  maps = {}
  for path, var in nnx.to_flat_state(state):
    key = ".".join(str(p) for p in path)
    shape = tuple(var.get_value().shape)
    m = re.fullmatch(r"language_model\.layers\.(\d+)\.(.*)", key)
    if m:  # decoder block slot j, stacked over repeats: HF layer r * period + j
      slot, rest = int(m.group(1)), m.group(2)
      names = tuple(f"{text}layers.{r * len(kinds) + slot}." for r in range(repeats))
      stacked, shape = True, shape[1:]
    elif (m := re.fullmatch(r"vision_model\.(transformer|global_transformer)\.layers\.(.*)", key)):
      names = tuple(f"vision_model.{m.group(1)}.layers.{i}." for i in range(shape[0]))
      rest, stacked, shape = m.group(2), True, shape[1:]
    else:
      names, rest, stacked = ("",), key, False
    if key == "lm_head.kernel":
      maps[key] = _linear((head,), False, shape[:1], shape[1:])
      continue
    if rest.endswith(".kernel"):
      n_in = 2 if rest.endswith("o_proj.kernel") else 1
      hf_rest = rest[: -len("kernel")] + "weight"
      full = tuple(n + hf_rest for n in names)
      maps[key] = _linear(full, stacked, shape[:n_in], shape[n_in:])
      continue
    hf_rest = {
        "language_model.embed_tokens.embedding": text + "embed_tokens.weight",
        "language_model.norm.weight": text + "norm.weight",
        "vision_model.patch_embedding": "vision_model.patch_embedding.weight",
        **{k: k + ".weight" for k in _TILE_TABLES},
    }.get(rest, rest)
    full = tuple(n + hf_rest for n in names)
    if rest == "vision_model.patch_embedding":  # HF conv (D, C, p, p); ours (C, p, p, D)
      maps[key] = TensorMap(full, False, (shape[3],) + shape[:3],
                            tuple((d,) for d in (shape[3],) + shape[:3]), (1, 2, 3, 0))
    elif rest in _TILE_TABLES:  # HF (ratios, tiles * ... * D); ours (ratios, tiles, ..., D)
      maps[key] = _copy(full, False, shape, (shape[0], math.prod(shape[1:])))
    else:
      maps[key] = _copy(full, stacked, shape)
  return maps


def canonical_name(name: str, mllama: bool) -> str:
  """Newer transformers naming (`model.language_model.*`, top-level `lm_head`) -> hub naming."""
  if not mllama:
    return name
  for new, old in (("model.language_model.", "language_model.model."),
                   ("model.vision_model.", "vision_model."),
                   ("model.multi_modal_projector.", "multi_modal_projector."),
                   ("lm_head.", "language_model.lm_head.")):
    if name.startswith(new):
      return old + name[len(new):]
  return name


class _Files:
  """The checkpoint's tensors: canonical name -> (file, stored name), files opened lazily."""

  def __init__(self, path: str, mllama: bool):
    self.path, self.handles, self.where = path, {}, {}
    index = os.path.join(path, INDEX)
    if os.path.exists(index):
      try:
        with open(index) as f:
          weight_map = json.load(f)["weight_map"]
      except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"corrupt checkpoint index {index}: {e!r}") from None
      for name, file in weight_map.items():
        if not os.path.isfile(os.path.join(path, file)):
          raise CheckpointError(f"missing checkpoint shard {file} in {path}"
                                f" (the index lists tensor {name!r} in it)")
      files = sorted(set(weight_map.values()))
    else:
      files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
      if not files:
        raise CheckpointError(f"no *.safetensors files in {path}")
    for file in files:
      for name in self._open(file).keys():
        self.where[canonical_name(name, mllama)] = (file, name)

  def _open(self, file: str):
    if file not in self.handles:
      full = os.path.join(self.path, file)
      try:
        self.handles[file] = safe_open(full, framework="np")
      except (SafetensorError, OSError) as e:
        raise CheckpointError(f"corrupt safetensors file {full}: {e}") from None
    return self.handles[file]

  def slice(self, name: str):
    file, stored = self.where[name]
    return self._open(file).get_slice(stored)


def _check(files: _Files, maps: dict[str, TensorMap], tied: bool) -> None:
  """Every needed tensor present with the right shape, nothing unknown: one-line errors."""
  expected = {n: m.hf_shape for m in maps.values() for n in m.names}
  for name, (file, _) in sorted(files.where.items()):
    if name not in expected and not name.endswith("rotary_emb.inv_freq") and not (
        tied and name.endswith("lm_head.weight")):
      raise CheckpointError(f"unexpected tensor {name!r} in {file} (not part of this model)")
  for name, shape in expected.items():
    if name not in files.where:
      raise CheckpointError(f"missing tensor {name!r}: no checkpoint file holds it")
    got = tuple(files.slice(name).get_shape())
    if got != shape:
      raise CheckpointError(f"tensor {name!r} in {files.where[name][0]} has shape {got},"
                            f" expected {shape}")


def _read(files: _Files, m: TensorMap, name: str, index: tuple[slice, ...]) -> np.ndarray:
  """Our block `index` of one (unstacked) layer, read from HF tensor `name`."""
  view_index = [None] * len(m.perm)
  for ours, view in enumerate(m.perm):
    view_index[view] = index[ours]
  hf_index, post, shape, pos = [], [], [], 0
  for sizes in m.groups:
    first, rest = view_index[pos], view_index[pos + 1: pos + len(sizes)]
    inner = math.prod(sizes[1:])
    hf_index.append(slice(first.start * inner, first.stop * inner))
    shape += [first.stop - first.start, *sizes[1:]]
    post += [slice(None), *rest]
    pos += len(sizes)
  block = np.asarray(files.slice(name)[tuple(hf_index)]).reshape(shape)
  return block[tuple(post)].transpose(m.perm)


def _fill(files: _Files, m: TensorMap, shape, sharding, dtype) -> jax.Array:
  """The global array, built from one host read per distinct shard."""
  by_index: dict[tuple, list] = {}
  for device, index in sharding.addressable_devices_indices_map(tuple(shape)).items():
    key = tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, shape))
    by_index.setdefault(tuple((s.start, s.stop) for s in key), []).append((device, key))
  arrays = []
  for entries in by_index.values():
    key = entries[0][1]
    if m.stacked:
      layers = range(key[0].start, key[0].stop)
      block = np.stack([_read(files, m, m.names[r], key[1:]) for r in layers])
    else:
      block = _read(files, m, m.names[0], key)
    block = block.astype(dtype)
    arrays += [jax.device_put(block, device) for device, _ in entries]
    del block
  return jax.make_array_from_single_device_arrays(tuple(shape), sharding, arrays)


def load_pretrained(path: str, *, mesh: jax.sharding.Mesh | None = None, dtype: str = "float32",
                    compute_dtype: str | None = None, **overrides: Any) -> Model:
  """A `Model` with the weights of the HF directory `path` (Llama or Mllama).

  dtype: parameter dtype; compute_dtype: defaults to `dtype`; overrides: other ModelConfig
  fields (remat, scan_layers, rules). With a mesh, parameters are sharded by the rules.
  """
  config = read_config(path, param_dtype=dtype, dtype=compute_dtype or dtype, **overrides)
  return load_tensors(config, _Files(path, config.vision is not None), mesh=mesh)


def load_tensors(config: ModelConfig, files: Any, *, mesh: jax.sharding.Mesh | None = None
                 ) -> Model:
  """A `Model` of `config` from HF-named tensors: `files` has `_Files`' interface (`where`:
  name -> (file, stored name); `slice(name)`: `get_shape()` and numpy indexing), so other
  formats (GGUF) load through the same checks and sharded fill."""
  graphdef, abstract = mllama.abstract(config)
  maps = tensor_maps(config, abstract)
  _check(files, maps, config.text.tie_word_embeddings)
  if mesh is not None:
    shardings = parallel.state_shardings(abstract, mesh, config.rules)
  else:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
  flat_shardings = dict(nnx.to_flat_state(shardings))

  def load(path, var):
    m = maps[".".join(str(p) for p in path)]
    value = var.get_value()
    sharding = flat_shardings[path].get_value()
    return var.replace(_fill(files, m, value.shape, sharding, value.dtype))

  state = nnx.from_flat_state([(p, load(p, v)) for p, v in nnx.to_flat_state(abstract)])
  return nnx.merge(graphdef, state)


def _hf_tensors(model: Model, dtype) -> Iterator[tuple[str, np.ndarray]]:
  """(HF name, array) pairs, one HF tensor at a time (a stacked parameter layer by layer)."""
  state = nnx.state(model, nnx.Param)
  maps = tensor_maps(model.config, state)
  for path, var in nnx.to_flat_state(state):
    m = maps[".".join(str(p) for p in path)]
    value = var.get_value()
    inverse = tuple(np.argsort(m.perm))
    for r, name in enumerate(m.names):
      ours = parallel.to_host(value[r] if m.stacked else value)
      yield name, np.ascontiguousarray(ours.transpose(inverse).reshape(m.hf_shape)).astype(dtype)


def save_pretrained(model: Model, path: str, *, dtype: str | None = None,
                    max_shard_bytes: int = 5 << 30) -> None:
  """Writes `config.json` and safetensors (sharded with an index past `max_shard_bytes`)
  that `transformers` loads. Every process must call it (gathers); process 0 writes."""
  dtype = jnp.dtype(dtype or model.config.param_dtype)
  writer = parallel.is_main_process()
  if writer:
    os.makedirs(path, exist_ok=True)
    torch_dtype = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}[dtype.name]
    hf_config(model.config, torch_dtype).to_json_file(os.path.join(path, "config.json"))
  shards, current, size = [], {}, 0
  tmp_names = []

  def flush():
    nonlocal current, size
    if current:
      name = f"shard-{len(tmp_names):05d}.tmp"
      if writer:
        save_file(current, os.path.join(path, name), metadata={"format": "pt"})
      tmp_names.append(name)
      shards.append(list(current))
      current, size = {}, 0

  for name, array in _hf_tensors(model, dtype):
    if current and size + array.nbytes > max_shard_bytes:
      flush()
    current[name] = array
    size += array.nbytes
  flush()
  if not writer:
    return
  count = len(tmp_names)
  final = (["model.safetensors"] if count == 1 else
           [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)])
  for tmp, name in zip(tmp_names, final):
    os.replace(os.path.join(path, tmp), os.path.join(path, name))
  if count > 1:
    total = sum(os.path.getsize(os.path.join(path, n)) for n in final)
    weight_map = {t: f for f, names in zip(final, shards) for t in names}
    with open(os.path.join(path, INDEX), "w") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
