"""The model's shape and numerics: a frozen `ModelConfig` (text decoder + optional vision tower).

Plain dataclasses with no JAX import, so config files and the CLI can read presets cheaply.
Field meanings follow transformers' `LlamaConfig` / `MllamaTextConfig` / `MllamaVisionConfig`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

# Logical axis -> mesh axes (None: replicated). The mesh is always ('data', 'fsdp', 'tensor').
# Parameters: FSDP over `embed`, tensor parallelism over heads / mlp / vocab. Activations:
# batch over data x fsdp, the rest follows the weights.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
    ("norm", None),
)

REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "save_qkv", "save_attn_mlp")
DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama-3's frequency-dependent RoPE scaling (`rope_type: llama3`)."""
  factor: float = 8.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """The Llama-3 decoder; with `cross_attention_layers` it is Mllama's text model."""
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  intermediate_size: int
  rms_norm_eps: float = 1e-5
  rope_theta: float = 500000.0
  rope_scaling: RopeScaling | None = RopeScaling()
  max_position_embeddings: int = 131072
  tie_word_embeddings: bool = False
  cross_attention_layers: tuple[int, ...] = ()
  # Mllama's embedding table has rows past the vocabulary (the `<|image|>` token and spares);
  # the LM head covers `vocab_size` only.
  extra_embeddings: int = 0
  # The tanh gates' value in a model built from random init (checkpoints bring their own).
  # transformers starts them at 0; a model trained from scratch then never opens them: no
  # gradient reaches the cross-attention or the vision tower while the gate is 0.
  cross_attention_gate_init: float = 0.0
  bos_token_id: int | None = 128000
  eos_token_id: int | tuple[int, ...] | None = 128001
  pad_token_id: int | None = None

  @property
  def num_embeddings(self) -> int:
    return self.vocab_size + self.extra_embeddings

  def layer_pattern(self) -> tuple[int, tuple[str, ...]]:
    """(repeats, kinds): the decoder is `repeats` copies of the block `kinds` ('self'/'cross').

    Periodic cross-attention layers (Mllama: every 5th from 3) give a short block scanned
    many times; anything else is one block of all layers (correct, just not scanned).
    """
    cross = set(self.cross_attention_layers)
    kinds = tuple("cross" if i in cross else "self" for i in range(self.num_layers))
    for period in range(1, self.num_layers + 1):
      if self.num_layers % period == 0 and all(
          kinds[i] == kinds[i % period] for i in range(self.num_layers)):
        return self.num_layers // period, kinds[:period]
    raise AssertionError("unreachable: the whole stack is always a period")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """Mllama's tiled ViT: a local encoder, a gated global encoder, intermediate features."""
  hidden_size: int = 1280
  num_layers: int = 32
  num_global_layers: int = 8
  num_heads: int = 16
  intermediate_size: int = 5120
  image_size: int = 560
  patch_size: int = 14
  num_channels: int = 3
  max_num_tiles: int = 4
  intermediate_layers: tuple[int, ...] = (3, 7, 15, 23, 30)
  supported_aspect_ratios: tuple[tuple[int, int], ...] = (
      (1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (3, 1), (4, 1))
  norm_eps: float = 1e-5

  @property
  def num_patches(self) -> int:
    """Tokens per tile: the patch grid plus the class token."""
    return (self.image_size // self.patch_size) ** 2 + 1

  @property
  def output_dim(self) -> int:
    """The projector's input: the final state and each intermediate layer's, concatenated."""
    return self.hidden_size * (1 + len(self.intermediate_layers))

  @property
  def max_aspect_ratio_id(self) -> int:
    return len(self.supported_aspect_ratios)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything `Model` needs: shapes, dtypes, remat, scanning and sharding rules."""
  text: TextConfig
  vision: VisionConfig | None = None
  image_token_id: int | None = None
  dtype: str = "float32"          # compute dtype (bf16 on accelerators)
  param_dtype: str = "float32"
  remat: str = "none"             # one of REMAT_POLICIES
  scan_layers: bool = True        # lax.scan over repeated blocks (False: unrolled loop)
  rules: tuple[tuple[str, Any], ...] = DEFAULT_RULES

  def __post_init__(self):
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"remat={self.remat!r}: must be one of {REMAT_POLICIES}")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in DTYPES:
        raise ValueError(f"{name}={getattr(self, name)!r}: must be one of {DTYPES}")
    t = self.text
    if t.num_heads % t.num_kv_heads:
      raise ValueError(f"num_heads={t.num_heads} is not a multiple of"
                       f" num_kv_heads={t.num_kv_heads}")
    if any(not 0 <= i < t.num_layers for i in t.cross_attention_layers):
      raise ValueError(f"cross_attention_layers {t.cross_attention_layers} outside"
                       f" 0..{t.num_layers - 1}")
    if self.vision is not None:
      v = self.vision
      if v.hidden_size % v.num_heads:
        raise ValueError(f"vision hidden_size={v.hidden_size} not divisible by"
                         f" num_heads={v.num_heads}")
      if any(not 0 <= i < v.num_layers for i in v.intermediate_layers):
        raise ValueError(f"vision intermediate_layers {v.intermediate_layers} outside"
                         f" 0..{v.num_layers - 1}")
      if v.image_size % v.patch_size:
        raise ValueError(f"image_size={v.image_size} is not a multiple of"
                         f" patch_size={v.patch_size}")

  @property
  def is_multimodal(self) -> bool:
    return self.vision is not None

  def replace(self, **changes) -> ModelConfig:
    return dataclasses.replace(self, **changes)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2)

  @classmethod
  def from_json(cls, text: str) -> ModelConfig:
    d = json.loads(text)
    tuples = lambda x: tuple(tuples(e) for e in x) if isinstance(x, list) else x  # noqa: E731
    text_d = {k: tuples(v) for k, v in d["text"].items()}
    if text_d.get("rope_scaling") is not None:
      text_d["rope_scaling"] = RopeScaling(**text_d["rope_scaling"])
    vision = None
    if d.get("vision"):
      vision = VisionConfig(**{k: tuples(v) for k, v in d["vision"].items()})
    rest = {k: tuples(v) for k, v in d.items() if k not in ("text", "vision")}
    return cls(text=TextConfig(**text_d), vision=vision, **rest)
