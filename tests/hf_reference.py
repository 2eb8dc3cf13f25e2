"""Reference models for the parity tests: tiny transformers Llama / Mllama with random
weights (every gate set non-zero, so the image path counts), saved with `save_pretrained`."""

from __future__ import annotations

import numpy as np
import torch
import transformers

# RoPE with original_max_position_embeddings=64 puts head_dim-16 frequencies in all three
# llama3 bands (kept, interpolated, divided by factor).
ROPE = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
            high_freq_factor=4.0, original_max_position_embeddings=64)
TOKENS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)


def llama(tied: bool, seed: int = 0) -> transformers.LlamaForCausalLM:
  torch.manual_seed(seed)
  cfg = transformers.LlamaConfig(
      vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=3,
      num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
      rope_parameters=ROPE, max_position_embeddings=512, tie_word_embeddings=tied, **TOKENS)
  return transformers.LlamaForCausalLM(cfg).eval()


def mllama(seed: int = 0, num_layers: int = 10, cross: tuple[int, ...] = (3, 8),
           vocab: int = 96) -> transformers.MllamaForConditionalGeneration:
  torch.manual_seed(seed)
  cfg = transformers.MllamaConfig(
      text_config=dict(
          vocab_size=vocab, hidden_size=64, intermediate_size=112, num_hidden_layers=num_layers,
          num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
          rope_parameters=ROPE, max_position_embeddings=512, cross_attention_layers=list(cross),
          **TOKENS),
      vision_config=dict(
          hidden_size=32, num_hidden_layers=3, num_global_layers=2, attention_heads=2,
          intermediate_size=48, image_size=28, patch_size=14, max_num_tiles=4,
          intermediate_layers_indices=[2, 0], vision_output_dim=96),
      image_token_index=vocab)
  model = transformers.MllamaForConditionalGeneration(cfg).eval()
  gen = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("gate") or name.endswith("gate_attn") or name.endswith("gate_ffn"):
        p.copy_(0.4 + 0.6 * torch.rand(p.shape, generator=gen))
  return model


def save(model, path) -> str:
  model.save_pretrained(str(path))
  return str(path)


def logits(model, **inputs) -> np.ndarray:
  model.set_attn_implementation("eager")
  with torch.no_grad():
    out = model(**{k: torch.as_tensor(np.asarray(v)) for k, v in inputs.items() if v is not None})
  return out.logits.float().numpy()


def image_batch(rng: np.random.Generator, rows: list[list[int]], seq: int, image_at: int = 2):
  """HF-shaped image inputs for a batch; rows[b] lists each image's aspect-ratio id (0: none).

  Tiles of a real image: its aspect ratio's w*h (default list); padded images and tiles are
  zero, with aspect_ratio_mask [1, 0, 0, 0] as transformers' processor sets. Text tokens from
  `image_at` on attend to every real tile of every image of their row.
  """
  ratios = [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (3, 1), (4, 1)]
  b, n_img = len(rows), max(len(r) for r in rows)
  pixel = np.zeros((b, n_img, 4, 3, 28, 28), np.float32)
  ar_ids = np.zeros((b, n_img), np.int64)
  ar_mask = np.zeros((b, n_img, 4), np.int64)
  ar_mask[:, :, 0] = 1
  cross = np.zeros((b, seq, n_img, 4), np.int64)
  for i, row in enumerate(rows):
    for j, rid in enumerate(row):
      if rid == 0:
        continue
      tiles = ratios[rid - 1][0] * ratios[rid - 1][1]
      pixel[i, j, :tiles] = rng.normal(size=(tiles, 3, 28, 28))
      ar_ids[i, j] = rid
      ar_mask[i, j, :tiles] = 1
      cross[i, image_at:, j, :tiles] = 1
  return dict(pixel_values=pixel, aspect_ratio_ids=ar_ids, aspect_ratio_mask=ar_mask,
              cross_attention_mask=cross)
