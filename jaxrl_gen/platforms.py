"""Which JAX platforms to start, decided before JAX is imported and without any output.

`import jaxrl_gen` (and so every `jaxrl-gen` command) calls `configure()`. JAX on its own
tries every backend it knows, and with the `libtpu` package installed (the `[aot]` extra that
`jaxrl-gen aot` needs to compile for TPU topologies) it starts libtpu on any host, which on a
machine without TPUs prints half a dozen lines of initialisation errors to stderr. So:

- `JAX_PLATFORMS` set in the environment (even to '', JAX's own automatic choice): left as it is;
- a TPU host (a Google TPU on the PCI bus, as JAX's own check reads it, or
  `JAX_FORCE_TPU_INIT`): left to JAX, which picks the TPU;
- otherwise JAX starts the GPU platforms that can run here (an NVIDIA or AMD GPU visible and
  JAX's plugin for it installed) and the CPU: `JAX_PLATFORMS=cuda,cpu`, `rocm,cpu` or `cpu`.
  A host whose GPU has no JAX plugin, or that has a plugin this module cannot name, is left
  to JAX, which then says so itself.

`jaxrl-gen aot` is unaffected: it reads TPU topologies from libtpu directly
(`jax.experimental.topologies`), not through a backend. Everything here is cheap (a scan of
`/sys/bus/pci/devices`, a few `os.path.exists`, the installed distributions' metadata).
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import pkgutil
import sys
from typing import Iterable, Mapping

GOOGLE_PCI_VENDOR = "0x1ae0"
# The PCI device ids of Google TPUs (v3, v4, v5p, v5e, v6e, 7x, and one unnamed), as
# jax._src.hardware_utils lists them.
TPU_PCI_DEVICES = frozenset({"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f",
                             "0x0076"})
NVIDIA_DEVICES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg")  # JAX's own check
AMD_DEVICES = ("/dev/kfd",)
# A JAX plugin's module or distribution name -> the platform it registers.
PLUGIN_PLATFORMS = (("cuda", "cuda"), ("rocm", "rocm"))


def tpu_chips(pci_root: str = "/sys/bus/pci/devices") -> int:
  """How many Google TPU chips the PCI bus shows."""
  count = 0
  for vendor in glob.glob(os.path.join(pci_root, "*", "vendor")):
    try:
      with open(vendor) as f:
        if f.read().strip() != GOOGLE_PCI_VENDOR:
          continue
      with open(os.path.join(os.path.dirname(vendor), "device")) as f:
        count += f.read().strip() in TPU_PCI_DEVICES
    except OSError:
      continue
  return count


def installed_plugins() -> list[str]:
  """The names of the installed JAX PJRT plugins (`jax_plugins.*` modules and `jax_plugins`
  entry points), as JAX discovers them; found without importing any of them."""
  names = []
  try:
    import jax_plugins  # noqa: PLC0415  (a namespace package: no code runs)

    names += [m.name for m in pkgutil.iter_modules(jax_plugins.__path__)]
  except ImportError:
    pass
  try:
    names += [e.name for e in importlib.metadata.entry_points(group="jax_plugins")]
  except Exception:  # a broken distribution's metadata must not stop a command
    pass
  return sorted(set(names))


def choose(environ: Mapping[str, str], tpus: int, nvidia: bool, amd: bool,
           plugins: Iterable[str]) -> str | None:
  """The `JAX_PLATFORMS` value to set, or None to leave the choice to JAX (see the module
  docstring)."""
  if "JAX_PLATFORMS" in environ or tpus or "JAX_FORCE_TPU_INIT" in environ:
    return None
  gpus = []
  for plugin in plugins:
    platform = next((p for key, p in PLUGIN_PLATFORMS if key in plugin.lower()), None)
    if platform is None:
      return None  # a plugin we cannot name: JAX decides
    visible = nvidia if platform == "cuda" else amd
    if visible and platform not in gpus:
      gpus.append(platform)
  if (nvidia and "cuda" not in gpus) or (amd and "rocm" not in gpus):
    return None  # a GPU without its plugin: JAX says so
  return ",".join(gpus + ["cpu"])


def configure(environ=None) -> str | None:
  """Sets `JAX_PLATFORMS` as `choose` decides (in `environ`, default `os.environ`, and in
  JAX's config when JAX is imported but has started no backend); returns the value set."""
  environ = os.environ if environ is None else environ
  value = choose(environ, tpu_chips(), any(map(os.path.exists, NVIDIA_DEVICES)),
                 any(map(os.path.exists, AMD_DEVICES)), installed_plugins())
  if value is None:
    return None
  environ["JAX_PLATFORMS"] = value
  jax = sys.modules.get("jax")
  if jax is not None and environ is os.environ:
    try:
      from jax._src import xla_bridge  # noqa: PLC0415

      if not xla_bridge.backends_are_initialized() and not jax.config.jax_platforms:
        jax.config.update("jax_platforms", value)
    except Exception:  # a JAX without these internals: the environment variable stays
      pass
  return value
