"""`generate`: the host entry point. Pads a list of prompts into buckets, picks (or compiles)
the program for that bucket and these settings, runs it under the mesh and returns host
arrays with the bucket padding removed. In a multi-process run each process passes its own
rows and gets them back (`hosts` makes the processes agree on the shapes)."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl_gen import parallel
from jaxrl_gen.models import config as model_config
from jaxrl_gen.models.inputs import IMAGE_KEYS, INPUT_AXES
from jaxrl_gen.sampling import hosts, loop
from jaxrl_gen.sampling import inputs as inputs_lib
from jaxrl_gen.sampling.inputs import BATCH_BUCKETS, PROMPT_BUCKETS, ImageInputs

CACHE_DTYPES = model_config.DTYPES


@dataclasses.dataclass(frozen=True)
class Result:
  """What one `generate` call produced, as host NumPy arrays, one row per prompt.

  tokens (B, max_new_tokens) int32: the new tokens, `pad_id` after a row's end.
  lengths (B,): new tokens per row, counting the EOS when one was emitted.
  logprobs (B, max_new_tokens) fp32: log_softmax(logits / T) of each sampled token, before
    top-k / top-p truncation (T = 1 when greedy); 0 past the row's length.
  prompt_hidden (B, hidden) fp32: the final-norm hidden state at the last prompt token
    (what the value head reads).
  finished (B,) bool: the row ended with an EOS id (False: the budget ran out).
  logits (B, max_new_tokens, vocab) fp32: every step's logits, with `return_logits` only.
  """
  tokens: np.ndarray
  lengths: np.ndarray
  logprobs: np.ndarray
  prompt_hidden: np.ndarray
  finished: np.ndarray
  logits: np.ndarray | None = None

  def token_lists(self) -> list[list[int]]:
    """Each row's new tokens (EOS included when hit) as a list."""
    return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths)]


# (graphdef, mesh, static settings, input shapes) -> jitted program. One entry per bucket
# touched; `jax.jit` compiles each once (the shapes inside a bucket are fixed).
_PROGRAMS: dict[tuple, Any] = {}


_AXES = {"ids": ("batch", "length"), "mask": ("batch", "length"), "live": ("batch",),
         "row": ("batch",),
         "eos": (None,),
         **{k: INPUT_AXES[k] for k in IMAGE_KEYS},
         "tokens": ("batch", None), "logprobs": ("batch", None), "lengths": ("batch",),
         "finished": ("batch",), "prompt_hidden": ("batch", "act_embed"),
         "logits": ("batch", None, "act_vocab")}


def global_shapes(batch: dict[str, np.ndarray], processes: int) -> dict[str, tuple]:
  """The global shapes of one process's batch arrays: each process holds an equal share of
  the rows."""
  return {k: (v.shape[0] * processes, *v.shape[1:]) if _AXES[k][0] == "batch" else v.shape
          for k, v in batch.items()}


def program(graphdef: nnx.GraphDef, state: nnx.State, rules, static: loop.Static,
            shapes: dict[str, tuple], mesh: Mesh | None):
  """The jitted sampling program for this bucket (global batch `shapes`), with explicit
  shardings on `mesh`; compiled on its first call (or lowered abstractly, `jaxrl-gen aot`)."""
  key = (graphdef, mesh, static, tuple(sorted(shapes.items())))
  fn = _PROGRAMS.get(key)
  if fn is not None:
    return fn

  def sampling_program(state, batch, budget, rng):  # the name compile logs and events show
    return loop.program(static, graphdef, state, batch, budget, rng)

  if mesh is None:
    fn = jax.jit(sampling_program)
  else:
    replicated = NamedSharding(mesh, PartitionSpec())
    outs = ["tokens", "logprobs", "lengths", "finished", "prompt_hidden"]
    outs += ["logits"] if static.return_logits else []
    fn = jax.jit(
        sampling_program,
        in_shardings=(parallel.state_shardings(state, mesh, rules),
                      batch_shardings(shapes, mesh, rules), replicated, replicated),
        out_shardings={k: NamedSharding(mesh, parallel.logical_to_spec(_AXES[k], rules))
                       for k in outs})
  _PROGRAMS[key] = fn
  return fn


def batch_shardings(shapes: dict[str, tuple], mesh: Mesh, rules) -> dict[str, NamedSharding]:
  """The shardings of a sampling program's global batch arrays (rows over the data shards)."""
  return {k: parallel.sharding_for(shape, _AXES[k], mesh, rules, k) for k, shape in shapes.items()}


def abstract_batch(config, rows: int, prompt_length: int, *, images: int = 0,
                   eos_slots: int = 8) -> dict[str, jax.ShapeDtypeStruct]:
  """The global batch of a sampling program as shapes and dtypes (what `generate` builds
  from prompts): `rows` left-padded prompts of `prompt_length`, `images` images per row."""
  i32 = np.int32
  batch = {"ids": ((rows, prompt_length), i32), "mask": ((rows, prompt_length), i32),
           "live": ((rows,), bool), "eos": ((eos_slots,), i32), "row": ((rows,), i32)}
  if images:
    v = config.vision
    tiles = v.max_num_tiles
    batch.update(pixel_values=((rows, images, tiles, v.num_channels, v.image_size,
                                v.image_size), np.float32),
                 aspect_ratio_ids=((rows, images), i32),
                 aspect_ratio_mask=((rows, images, tiles), i32),
                 cross_attention_mask=((rows, prompt_length, images, tiles), i32))
  return {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in batch.items()}


def _check(config, prompts, *, max_new_tokens, temperature, top_p, top_k, eos_ids, pad_id,
           cache_dtype) -> None:
  """One-line errors for arguments that cannot work, before anything is compiled."""
  vocab = config.text.num_embeddings
  if len(prompts) == 0:
    raise ValueError("generate: no prompts")
  for i, p in enumerate(prompts):
    p = np.asarray(p)
    if p.ndim != 1 or p.size == 0 or not np.issubdtype(p.dtype, np.integer):
      raise ValueError(f"prompts[{i}]: expected a non-empty list of token ids, got"
                       f" {p.dtype} array of shape {p.shape}")
    if p.min() < 0 or p.max() >= vocab:
      bad = int(p.min() if p.min() < 0 else p.max())
      raise ValueError(f"prompts[{i}]: token id {bad} outside the model's 0..{vocab - 1}")
  for name, value in (("max_new_tokens", max_new_tokens), ("top_k", top_k)):
    if int(value) != value or value < (1 if name == "max_new_tokens" else 0):
      raise ValueError(f"{name}={value!r}: must be a"
                       f" {'positive' if name == 'max_new_tokens' else 'non-negative'} integer")
  if not temperature >= 0:
    raise ValueError(f"temperature={temperature!r}: must be >= 0 (0 = greedy)")
  if not 0 < top_p <= 1:
    raise ValueError(f"top_p={top_p!r}: must be in (0, 1]")
  for name, ids in (("eos_ids", tuple(eos_ids)), ("pad_id", (pad_id,))):
    if any(not 0 <= int(e) < vocab for e in ids):
      raise ValueError(f"{name}={ids if name == 'eos_ids' else pad_id!r}: ids must lie in"
                       f" 0..{vocab - 1}")
  if cache_dtype is not None and cache_dtype not in CACHE_DTYPES:
    raise ValueError(f"cache_dtype={cache_dtype!r}: must be None (the compute dtype) or one of"
                     f" {CACHE_DTYPES}")


def _unroll(decode_layers: str, platform: str) -> bool:
  if decode_layers not in inputs_lib.DECODE_LAYERS:
    raise ValueError(f"decode_layers={decode_layers!r}: must be one of"
                     f" {inputs_lib.DECODE_LAYERS}")
  if decode_layers == "auto":
    return platform == "cpu"
  return decode_layers == "unrolled"


def static_settings(*, max_new_tokens: int, temperature: float, top_p: float = 1.0,
                    top_k: int = 0, pad_id: int = 0, cache_dtype: str | None = None,
                    decode_layers: str = "auto", return_logits: bool = False,
                    platform: str | None = None) -> loop.Static:
  """The program's static settings; 'auto' decode layers resolve against `platform` (the
  mesh's; default this host's backend)."""
  greedy = temperature == 0  # top-k / top-p do not change an argmax: one program for all
  return loop.Static(
      new_tokens=inputs_lib.token_bucket(int(max_new_tokens)),
      temperature=float(temperature), top_k=0 if greedy else int(top_k),
      top_p=1.0 if greedy else float(top_p),
      pad_id=int(pad_id),
      cache_dtype=cache_dtype, return_logits=bool(return_logits),
      unroll_decode=_unroll(decode_layers, platform or jax.default_backend()))


def generate(model: nnx.Module | tuple[nnx.GraphDef, nnx.State],
             prompts: Sequence[Sequence[int]], *, key: jax.Array, max_new_tokens: int,
             temperature: float, eos_ids: Sequence[int], top_p: float = 1.0, top_k: int = 0,
             images: ImageInputs | None = None, pad_id: int = 0,
             prompt_buckets: Sequence[int] = PROMPT_BUCKETS,
             batch_buckets: Sequence[int] = BATCH_BUCKETS, cache_dtype: str | None = None,
             decode_layers: str = "auto", return_logits: bool = False,
             mesh: Mesh | None = None) -> Result:
  """Samples up to `max_new_tokens` new tokens after each prompt (token-id lists of any
  lengths) with one compiled program: prefill, then a while loop of cached steps.

  model: a `Model`, or its `nnx.split` (graphdef, state) - the training parameters as they
    are. key: a PRNG key; row i's step-t draw uses fold_in(fold_in(key, i), t), so a row's
    sample does not depend on the other rows or on the bucket sizes.
  temperature: 0 = greedy; top_k (0 = off) and top_p (1 = off) truncate as transformers.
  eos_ids: a row stops after emitting any of these (a runtime input: changing them does not
    compile); later positions hold `pad_id` (which also pads prompts on the left).
  images: the rows' processed images (`ImageInputs`), for Mllama models.
  prompt_buckets / batch_buckets: the prompt length and row count are rounded up to these
    (the row count also to a multiple of the mesh's batch shards); the token buffer is the
    next power of two >= max_new_tokens. Each new bucket (or settings) compiles once.
  cache_dtype: the self-attention cache dtype (None: the model's compute dtype).
  decode_layers: 'scan' runs decode steps over the stacked weights like the model;
    'unrolled' unrolls them over per-layer slices taken once per call (a second copy of the
    decoder weights; each step then reads them in place - 1.6x faster decoding on CPU);
    'auto' (default): 'unrolled' on CPU, 'scan' on accelerators.
  return_logits: also return every step's fp32 logits (B, N, vocab).
  mesh: the mesh the parameters live on; rows are sharded over ('data', 'fsdp') and heads
    over 'tensor' by the model's rules.

  Multi-process (multi-host): every process calls `generate` at once with the same settings
  and key (checked) and its OWN prompts and images (at least one row, any count: each
  process's rows are padded to the largest count). The processes agree on the buckets
  (from the longest prompt and the most images anywhere), their rows become one global
  batch (`mesh` required; its batch axes must span the processes), and each gets back its
  own rows. Row j of process p draws as row (rows of processes < p) + j, so the result is
  the single-process result over the processes' prompts concatenated in process order.
  """
  if isinstance(model, nnx.Module):
    config = model.config
    graphdef, state = nnx.split(model)
  else:
    graphdef, state = model
    config = nnx.merge(graphdef, state).config
  # In a multi-process call every process learns whether any process rejected its
  # arguments (with the shapes), so none waits forever in the program's collectives.
  error, static, settings = None, None, 0
  try:
    static, prompt_buckets, batch_buckets, settings = _settings(
        config, prompts, images, mesh, key=key, max_new_tokens=max_new_tokens,
        temperature=temperature, top_p=top_p, top_k=top_k, eos_ids=eos_ids, pad_id=pad_id,
        prompt_buckets=prompt_buckets, batch_buckets=batch_buckets, cache_dtype=cache_dtype,
        decode_layers=decode_layers, return_logits=return_logits)
  except ValueError as e:
    error = e
  n = len(prompts)
  layout = hosts.agree(
      error, n, max(len(p) for p in prompts) if error is None else 0,
      None if images is None or error is not None else np.shape(images.pixel_values), settings)

  processes = jax.process_count()
  total = inputs_lib.bucket(processes * layout.rows, batch_buckets,
                            parallel.batch_shards(mesh, config.rules))
  rows = total // processes  # this process's rows, padded
  length = inputs_lib.bucket(layout.longest, prompt_buckets)
  ids, mask = inputs_lib.left_pad(prompts, length, rows, pad_id)
  batch = dict(ids=ids, mask=mask, live=np.arange(rows) < n, eos=inputs_lib.eos_array(eos_ids),
               row=layout.offset + np.arange(rows, dtype=np.int32))
  if layout.images:
    if images is None:  # this process's rows have no image; others' have
      images = ImageInputs.blank(n, layout.images, layout.tile_shape)
    batch.update(images.padded(prompts, length, rows, config.image_token_id, layout.images))

  if mesh is not None:
    _check_split(mesh, config.rules, rows, total)
  fn = program(graphdef, state, config.rules, static, global_shapes(batch, processes), mesh)
  with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
    if mesh is not None:  # each process's rows become its slices of one global batch
      batch = parallel.global_batch(batch, mesh, config.rules, {k: _AXES[k] for k in batch})
    out = fn(state, batch, np.int32(max_new_tokens), key)
  host = {k: parallel.process_local_data(v)[:n] for k, v in out.items()}
  for k in ("tokens", "logprobs", "logits"):
    if k in host:
      host[k] = host[k][:, :max_new_tokens]
  return Result(**host)


def _settings(config, prompts, images, mesh, *, key, max_new_tokens, temperature, top_p,
              top_k, eos_ids, pad_id, prompt_buckets, batch_buckets, cache_dtype,
              decode_layers, return_logits) -> tuple[loop.Static, tuple, tuple, int]:
  """Checks `generate`'s arguments (one-line errors) and returns the program's static
  settings, the buckets, and the digest of everything the processes must agree on."""
  if jax.process_count() > 1 and mesh is None:
    raise ValueError("generate: a multi-process call needs the mesh its parameters live on")
  _check(config, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
         top_k=top_k, eos_ids=eos_ids, pad_id=pad_id, cache_dtype=cache_dtype)
  prompt_buckets = inputs_lib.check_buckets("prompt_buckets", prompt_buckets)
  batch_buckets = inputs_lib.check_buckets("batch_buckets", batch_buckets)
  if images is not None:
    if config.vision is None:
      raise ValueError("images given to a text-only model (its config has no vision tower)")
    images.check(prompts, config.vision.max_num_tiles)
  static = static_settings(
      max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
      pad_id=pad_id, cache_dtype=cache_dtype, decode_layers=decode_layers,
      return_logits=return_logits, platform=None if mesh is None else parallel.platform(mesh))
  settings = hosts.digest(static, int(max_new_tokens), inputs_lib.eos_array(eos_ids),
                          prompt_buckets, batch_buckets, _key_data(key))
  return static, prompt_buckets, batch_buckets, settings


def _check_split(mesh: Mesh, rules, rows: int, total: int) -> None:
  """Each process's devices must hold `rows` of the `total` batch rows, its own: the batch
  axes have to span the processes (a process holding all rows would need everyone's)."""
  sharding = NamedSharding(mesh, parallel.logical_to_spec(("batch",), rules))
  held = {idx[0].indices(total)[:2] for idx in
          sharding.addressable_devices_indices_map((total,)).values()}
  count = sum(stop - start for start, stop in held)
  if count != rows:
    raise parallel.ShardingError(
        f"generate: this process's devices hold {count} of the {total} rows, not its own"
        f" {rows}: the mesh {dict(mesh.shape)} must split the batch axes (rule 'batch' ->"
        f" {parallel.logical_to_spec(('batch',), rules)[0]}) across the"
        f" {jax.process_count()} processes")


def _key_data(key: jax.Array) -> np.ndarray:
  """The key's bits (typed or raw uint32 keys), for the processes' settings check."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key)


def kwargs_from_config(sampling: ml_collections.ConfigDict) -> dict[str, Any]:
  """`generate` keyword arguments from a task config's `config.sampling` section
  (`config_lib.sampling_config`)."""
  return dict(
      max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
      top_p=sampling.top_p, top_k=sampling.top_k,
      prompt_buckets=tuple(sampling.prompt_buckets), batch_buckets=tuple(sampling.batch_buckets),
      cache_dtype=None if sampling.cache_dtype == "auto" else sampling.cache_dtype,
      decode_layers=sampling.decode_layers)
