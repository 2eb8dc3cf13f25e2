"""Named model shapes. The real ones match the published Hugging Face configs exactly
(`tests/test_model_presets.py` checks parameter counts against transformers' models).

    tiny                  Mllama for CPU tests: 5 text layers [self x3, cross, self], hidden 128,
                          vocab 2048 (+8 embedding rows; `<|image|>` = 2048), 56 px tiles.
    tiny-text             its text-only Llama sibling (4 layers, tied embeddings).
    mini-vision           Mllama for the GP-VL miniature (configs/gp_vl_mini.py): tiny's text
                          decoder over a ViT that reads one 96 px tile in 24 px patches (the
                          rendered hand at its own size: no resize, no tiling).
    small                 Mllama for CPU benchmarks (~90M parameters), 224 px tiles.
    small-text            its text-only sibling.
    llama-3.2-1b / -3b    text-only, tied embeddings, RoPE factor 32.
    llama-3.1-8b          text-only, untied, RoPE factor 8.
    llama-3.2-11b-vision  Mllama: 40 text layers (cross every 5th from 3), 1280-wide ViT.
    llama-3.2-90b-vision  Mllama: 100 text layers, hidden 8192.

The source of truth for preset names (`config_lib.PRESETS` reads `NAMES`); JAX-free.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jaxrl_gen.models.config import ModelConfig, RopeScaling, TextConfig, VisionConfig

_LLAMA3_ROPE = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                           original_max_position_embeddings=8192)
_LLAMA32_ROPE = RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                            original_max_position_embeddings=8192)
_LLAMA3_TOKENS = dict(bos_token_id=128000, eos_token_id=128001)


def _mllama_text(hidden: int, layers: int, heads: int, intermediate: int) -> TextConfig:
  return TextConfig(
      vocab_size=128256, hidden_size=hidden, num_layers=layers, num_heads=heads, num_kv_heads=8,
      head_dim=hidden // heads, intermediate_size=intermediate, rope_scaling=_LLAMA3_ROPE,
      cross_attention_layers=tuple(range(3, layers, 5)), extra_embeddings=8,
      pad_token_id=128004, **_LLAMA3_TOKENS)


def _tiny_text(vision: bool) -> TextConfig:
  return TextConfig(
      vocab_size=2048, hidden_size=128, num_layers=5 if vision else 4, num_heads=4, num_kv_heads=2,
      head_dim=32, intermediate_size=384, rope_scaling=_LLAMA3_ROPE,
      cross_attention_layers=(3,) if vision else (), extra_embeddings=8 if vision else 0,
      tie_word_embeddings=not vision, bos_token_id=None, eos_token_id=None)


def _small_text(vision: bool) -> TextConfig:
  return TextConfig(
      vocab_size=2048, hidden_size=768, num_layers=10 if vision else 8, num_heads=12,
      num_kv_heads=4, head_dim=64, intermediate_size=2048, rope_scaling=_LLAMA3_ROPE,
      cross_attention_layers=(3, 8) if vision else (), extra_embeddings=8 if vision else 0,
      tie_word_embeddings=not vision, bos_token_id=None, eos_token_id=None)


_BUILDERS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": lambda: ModelConfig(
        text=_tiny_text(True), image_token_id=2048,
        vision=VisionConfig(hidden_size=64, num_layers=4, num_global_layers=1, num_heads=2,
                            intermediate_size=256, image_size=56, intermediate_layers=(1, 3))),
    "tiny-text": lambda: ModelConfig(text=_tiny_text(False)),
    # 4x4 patches of 24 px: card i of the 96 px canvas lies in patch column i, rows 1-2. One
    # tile: the canvas is square, so Mllama's tiling would only upscale it.
    # Open gates: trained from scratch, transformers' closed ones never open.
    "mini-vision": lambda: ModelConfig(
        text=dataclasses.replace(_tiny_text(True), cross_attention_gate_init=0.5),
        image_token_id=2048,
        vision=VisionConfig(hidden_size=64, num_layers=3, num_global_layers=1, num_heads=2,
                            intermediate_size=256, image_size=96, patch_size=24, max_num_tiles=1,
                            supported_aspect_ratios=((1, 1),), intermediate_layers=(0, 2))),
    "small": lambda: ModelConfig(
        text=_small_text(True), image_token_id=2048,
        vision=VisionConfig(hidden_size=384, num_layers=8, num_global_layers=2, num_heads=6,
                            intermediate_size=1536, image_size=224, intermediate_layers=(3, 7))),
    "small-text": lambda: ModelConfig(text=_small_text(False)),
    "llama-3.2-1b": lambda: ModelConfig(text=TextConfig(
        vocab_size=128256, hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8,
        head_dim=64, intermediate_size=8192, rope_scaling=_LLAMA32_ROPE,
        tie_word_embeddings=True, **_LLAMA3_TOKENS)),
    "llama-3.2-3b": lambda: ModelConfig(text=TextConfig(
        vocab_size=128256, hidden_size=3072, num_layers=28, num_heads=24, num_kv_heads=8,
        head_dim=128, intermediate_size=8192, rope_scaling=_LLAMA32_ROPE,
        tie_word_embeddings=True, **_LLAMA3_TOKENS)),
    "llama-3.1-8b": lambda: ModelConfig(text=TextConfig(
        vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
        head_dim=128, intermediate_size=14336, rope_scaling=_LLAMA3_ROPE, **_LLAMA3_TOKENS)),
    "llama-3.2-11b-vision": lambda: ModelConfig(
        text=_mllama_text(4096, 40, 32, 14336), vision=VisionConfig(), image_token_id=128256),
    "llama-3.2-90b-vision": lambda: ModelConfig(
        text=_mllama_text(8192, 100, 64, 28672), vision=VisionConfig(), image_token_id=128256),
}

NAMES: tuple[str, ...] = tuple(_BUILDERS)


def get(name: str, **overrides: Any) -> ModelConfig:
  """The preset's ModelConfig, with top-level fields (dtype, remat, ...) replaced."""
  if name not in _BUILDERS:
    raise ValueError(f"unknown model preset {name!r}; known: {', '.join(NAMES)}")
  return _BUILDERS[name]().replace(**overrides)


def from_config(model: Any, mesh: Any = None, platform: str | None = None) -> ModelConfig:
  """ModelConfig from the task config's `config.model` (and `config.mesh` rules) sections.

  dtype 'auto' is bfloat16 on accelerators and float32 on CPU: on `platform` (the mesh's
  devices', e.g. 'tpu' when compiling for a TPU topology from a CPU host), else this host's
  default backend.
  """
  dtype = model.dtype
  if dtype == "auto":
    if platform is None:
      import jax  # noqa: PLC0415  (only when resolving 'auto'; this module stays JAX-free)
      platform = jax.default_backend()
    dtype = "float32" if platform == "cpu" else "bfloat16"
  overrides = dict(dtype=dtype, param_dtype=model.param_dtype, remat=model.remat,
                   scan_layers=model.scan_layers)
  if mesh is not None:
    overrides["rules"] = tuple((name, tuple(t) if isinstance(t, list) else t)
                               for name, t in mesh.rules)
  return get(model.preset, **overrides)
