"""Does a config's training fit a TPU slice? Compile its steps ahead of time for a topology.

    reports = aot.check(config, "v5p:2x2x2")        # one Report per compiled function

The steps are the trainers' own (`jaxrl_gen.train.steps`): SFT configs compile `sft_step`,
RL configs `rescore`, `ppo_update` and `sample` (prefill + decode). They are built on a mesh
of the topology's devices (libtpu's `jax.experimental.topologies`, no TPU needed) and
compiled with abstract inputs; XLA's memory analysis gives the per-chip bytes. Model FLOPs
are the paper's 6ND (2ND without gradients), not `cost_analysis()`, which counts a scanned
body (layers, accumulation, epochs, decode steps) once. The step time is a roofline lower
bound from the chip's published peak FLOP/s and HBM bandwidth (`jaxrl_gen.chips`): the
larger of compute time and the time to read the arguments and write the outputs once; for
sampling, prefill compute plus one read of the weights (and the KV cache) per decode step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time

import numpy as np

from jaxrl_gen import chips as chips_lib, platforms

# libtpu refuses a second process on the same host without it (parallel compiles, tests).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
os.environ.setdefault("TPU_STDERR_LOG_LEVEL", "3")
os.environ.setdefault("TPU_MIN_LOG_LEVEL", "3")
if not platforms.tpu_chips():
  # Without these libtpu, loaded here only to describe topologies, looks for this host's TPU
  # workers and prints what it did not find ("Failed to find host bounds...", "unexpected
  # worker hostname..."). It describes the same topologies with them (tests/test_aot.py).
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v4-8")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")

GIB = chips_lib.GIB
SFT_STEPS = ("sft_step",)
RL_STEPS = ("rescore", "ppo_update", "sample")


class DoesNotFit(ValueError):
  """A mesh or step that cannot fit the chips; the message is one line with what would."""


@dataclasses.dataclass(frozen=True)
class Report:
  """One compiled function on one topology: per-chip memory, FLOPs and the roofline."""
  function: str
  topology: str
  chip: str
  chips: int
  hosts: int
  mesh: tuple[int, ...]
  compile_s: float
  argument_gib: float
  output_gib: float
  alias_gib: float
  temp_gib: float
  hbm_gib_per_chip: float
  model_flops: float
  tokens: int
  est_step_s: float
  # held on the chip beside the function's own buffers for the whole run: the frozen
  # reference parameters of an RL run with a KL term or a self-judge
  resident_gib: float = 0.0

  @property
  def peak_gib_per_chip(self) -> float:
    return (self.argument_gib + self.output_gib - self.alias_gib + self.temp_gib
            + self.resident_gib)

  @property
  def fits(self) -> bool:
    return self.peak_gib_per_chip <= self.hbm_gib_per_chip

  @property
  def est_mfu(self) -> float:
    chip = chips_lib.lookup(self.chip)
    if not self.est_step_s or chip is None:
      return 0.0
    return self.model_flops / (self.est_step_s * self.chips * chip.peak_flops)

  def to_json(self) -> dict:
    out = dataclasses.asdict(self)
    out.update(peak_gib_per_chip=self.peak_gib_per_chip, fits=self.fits, est_mfu=self.est_mfu)
    return {k: round(v, 4) if isinstance(v, float) and k != "model_flops" else v
            for k, v in out.items()}

  def line(self) -> str:
    return (f"{self.function:<11} {self.topology:<10} compile {self.compile_s:6.1f} s | per chip:"
            f" args {self.argument_gib:6.2f} out {self.output_gib:6.2f} alias"
            f" {self.alias_gib:6.2f} temp {self.temp_gib:6.2f}"
            + (f" reference {self.resident_gib:6.2f}" if self.resident_gib else "") +
            f" -> peak"
            f" {self.peak_gib_per_chip:6.2f} / {self.hbm_gib_per_chip:.4g} GiB"
            f" {'fits' if self.fits else 'DOES NOT FIT'} | {self.model_flops:.3g} FLOPs,"
            f" est {self.est_step_s:.3g} s, MFU <= {self.est_mfu:.0%}")


def topology_mesh(topology: str, shape):
  """A ('data', 'fsdp', 'tensor') mesh of `shape` over the devices of a TPU topology."""
  from jax.experimental import topologies  # noqa: PLC0415

  from jaxrl_gen import parallel  # noqa: PLC0415

  name, options = chips_lib.topology_args(topology)
  try:
    devices = topologies.get_topology_desc(name, "tpu", **options).devices
  except Exception as e:  # libtpu raises RuntimeError / XlaRuntimeError for unknown shapes
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"topology {topology!r}: libtpu cannot describe it ({message}); is the"
                     " libtpu package installed (pip install -e '.[test]' or libtpu)?") from None
  return parallel.make_mesh(shape, devices)


def usable_hbm_bytes(topology: str) -> float:
  """The HBM libtpu lets one program use on a chip of `topology`: it compiles one that needs
  more and reads the figure from libtpu's refusal (how `chips`' usable figures are measured)."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  mesh = topology_mesh(topology, (-1, 1, 1))
  one = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def too_large(x):  # a sort's operand is materialized: 1 TiB of float32 temporaries
    rows = jnp.sin(jnp.arange(1 << 30, dtype=jnp.float32)[None, :] * x[:, None]
                   + jnp.arange(256.0)[:, None])
    return jnp.sort(rows, axis=1)[:, :1]

  try:
    jax.jit(too_large, in_shardings=one, out_shardings=one).lower(
        jax.ShapeDtypeStruct((1,), jnp.float32, sharding=one)).compile()
  except jax.errors.JaxRuntimeError as e:
    found = _HBM_OOM.search(str(e))
    if found:
      return float(found.group(3)) * _UNITS[found.group(4)]
    raise
  raise ValueError(f"{topology}: 1 TiB of temporaries compiled; libtpu names no HBM limit")


def state_bytes_per_chip(config, mesh) -> tuple[float, float | None]:
  """(bytes per chip of the trained parameters, their gradients and two Adam moments as the
  mesh shards the weights; one chip's usable HBM, None for a device of unknown memory: CPUs)."""
  from jaxrl_gen.models import mllama  # noqa: PLC0415
  from jaxrl_gen.train import steps  # noqa: PLC0415

  mc = steps.model_config(config, mesh)
  sizes = dict(mesh.shape)
  weight_shards = sizes["fsdp"] * sizes["tensor"]
  moments = config.optim.moment_dtype if config.mode == "sft" else mc.param_dtype
  # params and grads in the parameter dtype, Adam's mu and nu in the moments'
  per_param = 2 * np.dtype(mc.param_dtype).itemsize + 2 * np.dtype(moments).itemsize
  chip = chips_lib.lookup(mesh.devices.flat[0].device_kind)
  return (mllama.param_count(mc) * per_param / weight_shards,
          None if chip is None else chip.usable_hbm)


def check_mesh(config, mesh) -> None:
  """Refuses (one line) a mesh whose weight sharding leaves more training state on each chip
  than a chip holds, before anything is compiled (`jaxrl-gen aot`, and `validate` for
  training runs on accelerators)."""
  need, have = state_bytes_per_chip(config, mesh)
  if have is not None and need > have:
    sizes = dict(mesh.shape)
    chips = math.prod(sizes.values())
    raise DoesNotFit(
        f"mesh {tuple(sizes.values())} shards the weights {sizes['fsdp'] * sizes['tensor']}"
        f" ways: preset {config.model.preset!r} keeps {need / GIB:.1f} GiB of parameters,"
        f" gradients and Adam moments on each chip, a chip has {have / GIB:.4g}; shard them,"
        f" e.g. --config.mesh.shape='(1,-1,1)' (FSDP over all {chips} chips)")


def _roofline(step, mc, chip: chips_lib.Chip, chips: int, moved: float, tensor: int) -> float:
  """A lower bound on the step's time: compute at the chip's peak, or the HBM traffic of
  reading its arguments and writing its outputs once (`moved` bytes per chip)."""
  from jaxrl_gen.models import mllama  # noqa: PLC0415

  compute = step.flops / (chips * chip.peak_flops)
  if step.name != "sample":
    return max(compute, moved / chip.hbm_bandwidth)
  # Prefill compute, then each decode step reads the weights (gathered over FSDP, split over
  # the tensor axis) and the KV cache once, or computes, whichever is slower.
  rows, prompt = step.args[1]["ids"].shape
  new = step.tokens // rows - prompt
  n, itemsize, t = mllama.param_count(mc), np.dtype(mc.dtype).itemsize, mc.text
  weights = n * itemsize / tensor
  cache = 2 * t.num_layers * rows * (prompt + new) * t.num_kv_heads * t.head_dim * itemsize
  prefill = 2.0 * n * rows * prompt / (chips * chip.peak_flops)
  per_token = max(2.0 * n * rows / (chips * chip.peak_flops),
                  (weights + cache / chips) / chip.hbm_bandwidth)
  return prefill + new * per_token


# What libtpu says when a program's temporaries alone exceed the chip's HBM (it then refuses
# to compile): the bytes it needed and the HBM it had (`chips` records that figure).
_HBM_OOM = re.compile(
    r"HLO temporaries \(([\d.]+)([KMGT])\) exceeds available HBM \(([\d.]+)([KMGT])\)")
_UNITS = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def _shard_bytes(tree) -> int:
  import jax  # noqa: PLC0415

  return sum(math.prod(x.sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(tree) if not jax.dtypes.issubdtype(x.dtype,
                                                                          jax.dtypes.prng_key))


def _reference_bytes(config, built) -> int:
  """Per-chip bytes of the frozen copy of the trained parameters an RL run keeps (sharded as
  the policy's), 0 when it keeps none."""
  from jaxrl_gen.train import rl  # noqa: PLC0415

  if config.mode == "sft" or not rl.keeps_reference(config):
    return 0
  return _shard_bytes(built["rescore"].args[0])  # the trained parameters, placed


def _memory(step) -> dict[str, float]:
  """Per-chip bytes of the compiled step: XLA's memory analysis or, when libtpu refuses to
  compile for lack of HBM, the temporaries it reports and the arguments' shards."""
  import jax  # noqa: PLC0415

  try:
    m = step.lower().compile().memory_analysis()
  except jax.errors.JaxRuntimeError as e:
    found = _HBM_OOM.search(str(e))
    if not found:
      raise
    need, unit, _, _ = found.groups()
    return {"argument": _shard_bytes(step.args), "output": 0.0, "alias": 0.0,
            "temp": float(need) * _UNITS[unit]}
  return {"argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes,
          "alias": m.alias_size_in_bytes, "temp": m.temp_size_in_bytes}


def _built(config, mesh, prompt_length: int):
  from jaxrl_gen.train import steps  # noqa: PLC0415

  if config.mode == "sft":
    return steps.sft(config, mesh), SFT_STEPS
  if config.mode in ("rl", "grpo"):
    return steps.rl(config, mesh, prompt_length=prompt_length), RL_STEPS
  raise ValueError(f"jaxrl-gen aot compiles the steps of an sft, rl or grpo config; this one's mode"
                   f" is {config.mode!r}")


def check(config, topology: str, *, prompt_length: int = 512, functions=None,
          on_report=None) -> list[Report]:
  """Compiles the config's steps for `topology` (its `config.mesh.shape` over the topology's
  chips) and reports each; `functions` picks a subset, `on_report` sees each as it lands."""
  from jaxrl_gen.train import steps  # noqa: PLC0415

  mesh = topology_mesh(topology, config.mesh.shape)
  check_mesh(config, mesh)
  built, names = _built(config, mesh, prompt_length)
  unknown = set(functions or ()) - set(names)
  if unknown:
    raise ValueError(f"functions {sorted(unknown)}: this config compiles {', '.join(names)}")
  device = mesh.devices.flat[0]
  chip = chips_lib.lookup(device.device_kind)
  sizes = dict(mesh.shape)
  resident = _reference_bytes(config, built)
  reports = []
  for name in names:
    if functions and name not in functions:
      continue
    step = built[name]
    started = time.perf_counter()
    memory = _memory(step)
    seconds = time.perf_counter() - started
    moved = memory["argument"] + memory["output"]
    report = Report(
        function=name, topology=topology, chip=chip.name, chips=mesh.devices.size,
        hosts=steps.processes(mesh), mesh=tuple(sizes.values()), compile_s=seconds,
        argument_gib=memory["argument"] / GIB, output_gib=memory["output"] / GIB,
        alias_gib=memory["alias"] / GIB, temp_gib=memory["temp"] / GIB,
        hbm_gib_per_chip=chip.usable_hbm / GIB, model_flops=step.flops,
        tokens=step.tokens,
        est_step_s=_roofline(step, built.model_config, chip, mesh.devices.size, moved,
                             sizes["tensor"]),
        resident_gib=resident / GIB)
    reports.append(report)
    if on_report is not None:
      on_report(report)
  return reports


def _fewer_sampled_rows(config, report: Report) -> str:
  """The sampler's temporaries (KV cache, logits) grow with the rows it decodes at once: the
  largest power-of-two share of them whose temporaries fit beside the weights (and a frozen
  reference), as `sampling.max_rows` (the same episodes, answered in consecutive calls)."""
  from jaxrl_gen.train import steps  # noqa: PLC0415

  # a tenth of the chip's free memory kept back: a compile that fills HBM to the byte is refused
  room = 0.9 * (report.hbm_gib_per_chip - (report.peak_gib_per_chip - report.temp_gib))
  share = 2 ** math.ceil(math.log2(report.temp_gib / room)) if room > 0 else 0
  rows = steps.sample_rows(config)
  if not share or rows // share == 0:
    return "fewer sampled rows cannot help: the weights alone fill the chip"
  return f"--config.sampling.max_rows={rows // share} (rows a host decodes at once)"


def advice(config, report: Report) -> str:
  """One line: why a step does not fit and what would."""
  need = report.peak_gib_per_chip / report.hbm_gib_per_chip
  chips = 2 ** math.ceil(math.log2(report.chips * need))
  tips = [f"about {chips} chips at this sharding"]
  if config.model.remat != "full":
    tips.append("--config.model.remat=full")
  if config.mode == "sft":
    tips.append(f"--config.sft.accum={config.sft.accum * 2 ** math.ceil(math.log2(need) + 1)}")
  elif report.function == "sample":
    tips.append(_fewer_sampled_rows(config, report))
  else:
    # Micro-batches smaller than the data shards are gathered whole onto every chip: fewer,
    # larger ones (one row a data shard) need less memory, not more.
    p = config.ppo
    shards = report.mesh[0] * report.mesh[1]
    micro = p.num_steps * report.hosts // (p.minibatches * p.grad_accum)
    if micro % shards:
      fill = max(1, p.num_steps * report.hosts // (p.minibatches * shards))
      tips.append(f"--config.ppo.grad_accum={fill} (micro-batches of one row a data shard)")
    else:
      tips.append(f"--config.ppo.grad_accum={p.grad_accum * 2}")
  if report.mesh[2] == 1:
    tips.append("a tensor axis, e.g. --config.mesh.shape='(1,-1,4)'")
  if config.mode == "sft" and config.optim.moment_dtype != "bfloat16":
    tips.append("--config.optim.moment_dtype=bfloat16")
  if config.model.param_dtype != "bfloat16":
    tips.append("--config.model.param_dtype=bfloat16 (half the state)")
  return (f"{report.function} needs {report.peak_gib_per_chip:.1f} GiB per chip on"
          f" {report.topology}, a {report.chip} has {report.hbm_gib_per_chip:.4g}: try "
          + ", ".join(tips))
