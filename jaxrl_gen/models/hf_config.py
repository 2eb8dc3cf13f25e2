"""Hugging Face `config.json` <-> `ModelConfig`, for `llama` and `mllama` checkpoints.

Reading goes through transformers' own config classes, so missing keys take transformers'
defaults and both RoPE spellings (`rope_scaling` + `rope_theta`, or `rope_parameters`) work.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxrl_gen.models.config import ModelConfig, RopeScaling, TextConfig, VisionConfig

MLLAMA_EXTRA_EMBEDDINGS = 8  # MllamaTextModel: nn.Embedding(vocab_size + 8, hidden)


class CheckpointError(ValueError):
  """A checkpoint that cannot be loaded; the message is one line naming the tensor or file."""


def _rope(cfg: Any, where: str) -> tuple[float, RopeScaling | None]:
  params = dict(getattr(cfg, "rope_parameters", None) or {})
  theta = params.get("rope_theta", getattr(cfg, "rope_theta", None))
  kind = params.get("rope_type", params.get("type", "default"))
  if theta is None:
    raise CheckpointError(f"{where}: no rope_theta")
  if kind == "default":
    return float(theta), None
  if kind != "llama3":
    raise CheckpointError(f"{where}: rope_type {kind!r} is not supported (default, llama3)")
  return float(theta), RopeScaling(
      factor=float(params["factor"]), low_freq_factor=float(params["low_freq_factor"]),
      high_freq_factor=float(params["high_freq_factor"]),
      original_max_position_embeddings=int(params["original_max_position_embeddings"]))


def _token(x):
  return tuple(x) if isinstance(x, (list, tuple)) else x


def _text(cfg: Any, where: str, *, mllama: bool) -> TextConfig:
  if getattr(cfg, "hidden_act", "silu") != "silu":
    raise CheckpointError(f"{where}: hidden_act {cfg.hidden_act!r} is not supported (silu)")
  for flag in ("attention_bias", "mlp_bias"):
    if getattr(cfg, flag, False):
      raise CheckpointError(f"{where}: {flag}=True is not supported")
  theta, scaling = _rope(cfg, where)
  heads = cfg.num_attention_heads
  return TextConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_hidden_layers,
      num_heads=heads, num_kv_heads=cfg.num_key_value_heads or heads,
      head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
      intermediate_size=cfg.intermediate_size, rms_norm_eps=float(cfg.rms_norm_eps),
      rope_theta=theta, rope_scaling=scaling, max_position_embeddings=cfg.max_position_embeddings,
      # Mllama never ties its LM head (transformers leaves it untied whatever the flag says).
      tie_word_embeddings=False if mllama else bool(cfg.tie_word_embeddings),
      cross_attention_layers=tuple(cfg.cross_attention_layers) if mllama else (),
      extra_embeddings=MLLAMA_EXTRA_EMBEDDINGS if mllama else 0,
      bos_token_id=cfg.bos_token_id, eos_token_id=_token(cfg.eos_token_id),
      pad_token_id=cfg.pad_token_id)


def _vision(cfg: Any, where: str) -> VisionConfig:
  if cfg.hidden_act != "gelu":
    raise CheckpointError(f"{where}: vision hidden_act {cfg.hidden_act!r} is not supported (gelu)")
  v = VisionConfig(
      hidden_size=cfg.hidden_size, num_layers=cfg.num_hidden_layers,
      num_global_layers=cfg.num_global_layers, num_heads=cfg.attention_heads,
      intermediate_size=cfg.intermediate_size, image_size=int(cfg.image_size),
      patch_size=int(cfg.patch_size), num_channels=cfg.num_channels,
      max_num_tiles=cfg.max_num_tiles,
      intermediate_layers=tuple(cfg.intermediate_layers_indices),
      supported_aspect_ratios=tuple(tuple(r) for r in cfg.supported_aspect_ratios),
      norm_eps=float(cfg.norm_eps))
  if cfg.vision_output_dim != v.output_dim:
    raise CheckpointError(
        f"{where}: vision_output_dim={cfg.vision_output_dim} but hidden_size x (1 +"
        f" {len(v.intermediate_layers)} intermediate layers) = {v.output_dim}")
  return v


def read_config(path: str, **overrides: Any) -> ModelConfig:
  """The ModelConfig of a Hugging Face model directory (`overrides`: dtype, remat, ...)."""
  where = os.path.join(path, "config.json")
  if not os.path.isfile(where):
    raise CheckpointError(f"no config.json in {path}")
  try:
    with open(where) as f:
      model_type = json.load(f).get("model_type")
  except (OSError, ValueError) as e:
    raise CheckpointError(f"unreadable {where}: {e}") from None
  if model_type not in ("llama", "mllama"):
    raise CheckpointError(f"{where}: model_type {model_type!r} is not supported (llama, mllama)")
  import transformers  # noqa: PLC0415  (heavy; only needed here)
  try:
    cfg = transformers.AutoConfig.from_pretrained(path)
  except Exception as e:  # transformers raises many types for a bad file
    raise CheckpointError(f"{where}: {str(e).splitlines()[0]}") from None
  if model_type == "llama":
    return ModelConfig(text=_text(cfg, where, mllama=False), **overrides)
  return ModelConfig(text=_text(cfg.text_config, where, mllama=True),
                     vision=_vision(cfg.vision_config, where),
                     image_token_id=cfg.image_token_index, **overrides)


def _rope_parameters(t: TextConfig) -> dict[str, Any]:
  if t.rope_scaling is None:
    return {"rope_type": "default", "rope_theta": t.rope_theta}
  s = t.rope_scaling
  return {"rope_type": "llama3", "rope_theta": t.rope_theta, "factor": s.factor,
          "low_freq_factor": s.low_freq_factor, "high_freq_factor": s.high_freq_factor,
          "original_max_position_embeddings": s.original_max_position_embeddings}


def _text_dict(t: TextConfig) -> dict[str, Any]:
  eos = list(t.eos_token_id) if isinstance(t.eos_token_id, tuple) else t.eos_token_id
  tokens = dict(bos_token_id=t.bos_token_id, eos_token_id=eos)
  # Unset ids keep transformers' defaults (MllamaTextConfig insists on integers).
  tokens = {k: v for k, v in tokens.items() if v is not None}
  return dict(
      vocab_size=t.vocab_size, hidden_size=t.hidden_size, num_hidden_layers=t.num_layers,
      num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
      intermediate_size=t.intermediate_size, rms_norm_eps=t.rms_norm_eps,
      rope_parameters=_rope_parameters(t), max_position_embeddings=t.max_position_embeddings,
      tie_word_embeddings=t.tie_word_embeddings, pad_token_id=t.pad_token_id, hidden_act="silu",
      **tokens)


def hf_config(config: ModelConfig, torch_dtype: str):
  """The transformers config object (LlamaConfig / MllamaConfig) describing `config`."""
  import transformers  # noqa: PLC0415
  t = config.text
  if config.vision is None:
    if t.cross_attention_layers or t.extra_embeddings:
      raise CheckpointError("a text model with cross-attention layers or extra embedding rows"
                            " has no transformers equivalent")
    cfg = transformers.LlamaConfig(head_dim=t.head_dim, **_text_dict(t))
    cfg.architectures = ["LlamaForCausalLM"]
  else:
    if t.tie_word_embeddings or t.extra_embeddings != MLLAMA_EXTRA_EMBEDDINGS:
      raise CheckpointError("Mllama needs an untied LM head and exactly 8 extra embedding rows")
    if t.head_dim * t.num_heads != t.hidden_size:
      raise CheckpointError("Mllama needs head_dim * num_heads == hidden_size")
    v = config.vision
    text = dict(_text_dict(t), cross_attention_layers=list(t.cross_attention_layers))
    vision = dict(
        hidden_size=v.hidden_size, num_hidden_layers=v.num_layers,
        num_global_layers=v.num_global_layers, attention_heads=v.num_heads,
        intermediate_size=v.intermediate_size, vision_output_dim=v.output_dim,
        image_size=v.image_size, patch_size=v.patch_size, num_channels=v.num_channels,
        max_num_tiles=v.max_num_tiles, intermediate_layers_indices=list(v.intermediate_layers),
        supported_aspect_ratios=[list(r) for r in v.supported_aspect_ratios],
        norm_eps=v.norm_eps, hidden_act="gelu")
    cfg = transformers.MllamaConfig(text_config=text, vision_config=vision,
                                    image_token_index=config.image_token_id)
    cfg.architectures = ["MllamaForConditionalGeneration"]
  cfg.dtype = torch_dtype
  return cfg
