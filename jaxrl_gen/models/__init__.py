"""Flax NNX Llama-3 / Llama-3.2-Vision (Mllama): `Model`, its config and presets, HF I/O.

    from jaxrl_gen import models
    model = models.Model(models.presets.get("tiny"), rngs=nnx.Rngs(0))
    model = models.load_pretrained("/path/to/hf_dir", mesh=mesh)
    model = models.load_pretrained("/path/to/model.Q4_1.gguf", mesh=mesh)  # dequantized

`config` and `presets` import no JAX (config files read them); the rest loads on first use.
"""

from __future__ import annotations

import importlib

from jaxrl_gen.models import presets
from jaxrl_gen.models.config import ModelConfig, RopeScaling, TextConfig, VisionConfig

_LAZY = {
    "Model": "jaxrl_gen.models.mllama",
    "ModelOutput": "jaxrl_gen.models.mllama",
    "KVCache": "jaxrl_gen.models.llama",
    "save_pretrained": "jaxrl_gen.models.hf",
    "create": "jaxrl_gen.models.mllama",
    "abstract": "jaxrl_gen.models.mllama",
    "param_count": "jaxrl_gen.models.mllama",
}

__all__ = ["ModelConfig", "RopeScaling", "TextConfig", "VisionConfig", "presets",
           "load_pretrained", *_LAZY]


def load_pretrained(path, **kwargs):
  """A `Model` from a Hugging Face directory or a `.gguf` file (`hf.load_pretrained`,
  `gguf.load_pretrained`: dtype, compute_dtype, mesh and ModelConfig overrides)."""
  if str(path).endswith(".gguf"):
    from jaxrl_gen.models import gguf  # noqa: PLC0415
    return gguf.load_pretrained(str(path), **kwargs)
  from jaxrl_gen.models import hf  # noqa: PLC0415
  return hf.load_pretrained(path, **kwargs)


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
