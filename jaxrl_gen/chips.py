"""Published per-chip figures of the accelerators the project targets, and TPU topology names.

    chips.lookup("TPU v5")          # -> Chip(name='TPU v5p', peak_flops=4.59e14, ...)
    chips.topology_args("v4:2x2x2")  # -> ('v4:2x2x2', {'chip_config_name': 'megacore'})

`peak_flops` is the dense bf16 peak (no sparsity), `hbm_bytes` the published HBM of one chip
(one JAX device: a v4 / v5p chip in megacore mode is one device), `hbm_bandwidth` its
bytes/s. `usable_hbm_bytes` is what one program may use: for TPUs the figure libtpu compiles
against (measured by `jaxrl_gen.aot.usable_hbm_bytes`; a test checks these against it), less
than the published one on v4, v5e and v6e; the published figure elsewhere. Every fit (`jaxrl-gen
aot`'s rows, the trainers' mesh check) compares with it. They feed MFU (`jaxrl_gen.metrics`)
and the roofline of `jaxrl-gen aot`. JAX-free.
"""

from __future__ import annotations

import dataclasses

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  peak_flops: float      # dense bf16 FLOP/s
  hbm_bytes: float
  hbm_bandwidth: float   # bytes/s
  usable_hbm_bytes: float | None = None  # None: all of hbm_bytes

  @property
  def hbm_gib(self) -> float:
    return self.hbm_bytes / GIB

  @property
  def usable_hbm(self) -> float:
    """Bytes of HBM one program may use."""
    return self.hbm_bytes if self.usable_hbm_bytes is None else self.usable_hbm_bytes


# Matched against `jax.Device.device_kind` by substring, first match wins: the device kinds
# are "TPU v4", "TPU v5 lite" (v5e), "TPU v5" (v5p), "TPU v6 lite" (v6e), "NVIDIA H100 ...".
# The TPUs' usable HBM: libtpu 0.0.52's "available HBM" (in GiB) on each kind.
_V6E = Chip("TPU v6e", 918e12, 32 * GIB, 1640e9, 31.24 * GIB)
_V5E = Chip("TPU v5e", 197e12, 16 * GIB, 819e9, 15.75 * GIB)
_V5P = Chip("TPU v5p", 459e12, 95 * GIB, 2765e9, 95.73 * GIB)
_CHIPS = (
    ("TPU v6 lite", _V6E),
    ("TPU v6e", _V6E),
    ("TPU v5 lite", _V5E),
    ("TPU v5e", _V5E),
    ("TPU v5p", _V5P),
    ("TPU v5", _V5P),
    ("TPU v4", Chip("TPU v4", 275e12, 32 * GIB, 1228e9, 30.75 * GIB)),
    ("TPU v3", Chip("TPU v3", 123e12, 16 * GIB, 900e9)),
    ("H200", Chip("H200", 989e12, 141e9, 4.8e12)),
    ("H100", Chip("H100", 989e12, 80 * GIB, 3.35e12)),
    ("A100", Chip("A100", 312e12, 80 * GIB, 2.039e12)),
    ("L4", Chip("L4", 121e12, 24 * GIB, 300e9)),
)


def lookup(device_kind: str) -> Chip | None:
  """The chip of a device kind, None where unknown (CPUs)."""
  kind = device_kind.lower()
  return next((chip for name, chip in _CHIPS if name.lower() in kind), None)


# Topology names as users write them -> libtpu's names and options.
_TOPOLOGY_PREFIXES = {"v4": ("v4", {"chip_config_name": "megacore"}), "v5p": ("v5p", {}),
                      "v5e": ("v5e", {}), "v5litepod": ("v5e", {}), "v6e": ("v6e", {})}


def topology_args(topology: str) -> tuple[str, dict]:
  """('v4:2x2x2' style name, keyword options) for `jax.experimental.topologies`."""
  kind, sep, shape = topology.partition(":")
  if not sep or kind.lower() not in _TOPOLOGY_PREFIXES or not shape:
    raise ValueError(f"topology {topology!r}: expected KIND:SHAPE with KIND one of"
                     f" {', '.join(_TOPOLOGY_PREFIXES)} and SHAPE like 2x2x2 (v4, v5p) or"
                     " 4x4 (v5e, v6e)")
  dims = shape.lower().split("x")
  if not all(d.isdigit() and int(d) > 0 for d in dims):
    raise ValueError(f"topology {topology!r}: SHAPE {shape!r} must be positive integers"
                     " joined by 'x'")
  name, options = _TOPOLOGY_PREFIXES[kind.lower()]
  return f"{name}:{'x'.join(dims)}", dict(options)
