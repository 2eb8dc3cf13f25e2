"""Presets: exact HF shapes. Parameter counts via `jax.eval_shape` (no memory) against
transformers models built on torch's meta device, and against the published counts."""

import subprocess
import sys

import pytest
import torch
import transformers

from jaxrl_gen import config_lib
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.models.hf_config import hf_config

BLOCK = ("self",) * 3 + ("cross", "self")  # Mllama's decoder block

# Parameter counts of the released checkpoints (model cards / safetensors metadata).
PUBLISHED = {
    "llama-3.2-1b": 1_235_814_400,
    "llama-3.2-3b": 3_212_749_824,
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.2-11b-vision": 10_670_220_835,
}


def _hf_count(config) -> int:
  cls = (transformers.MllamaForConditionalGeneration if config.vision
         else transformers.LlamaForCausalLM)
  with torch.device("meta"):
    model = cls(hf_config(config, "bfloat16"))
  return sum(p.numel() for p in model.parameters())  # a tied head counts once


def test_parameter_counts_match_transformers():
  rows = []
  for name in presets.NAMES:
    config = presets.get(name)
    ours, theirs = mllama.param_count(config), _hf_count(config)
    rows.append(f"{name:<22}{ours:>16,}{theirs:>16,}")
    assert ours == theirs, name
    if name in PUBLISHED:
      assert ours == PUBLISHED[name], name
  print("\npreset                         ours (jax)  transformers\n" + "\n".join(rows))


def test_vision_presets_are_transformers_mllama_defaults():
  # MllamaConfig's defaults are Llama-3.2-11B-Vision except image_size (448; 560 released) and
  # RoPE (the released config.json: llama3 scaling, factor 8, original length 8192)
  rope = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
              high_freq_factor=4.0, original_max_position_embeddings=8192)
  default = transformers.MllamaConfig(vision_config=dict(image_size=560),
                                      text_config=dict(rope_parameters=rope)).to_dict()
  ours = hf_config(presets.get("llama-3.2-11b-vision"), "bfloat16").to_dict()
  for section in ("text_config", "vision_config"):
    for key, value in default[section].items():
      if key not in ("dtype", "architectures", "transformers_version", "_name_or_path"):
        assert ours[section].get(key) == value, (section, key)
  big = presets.get("llama-3.2-90b-vision").text
  shape = (big.hidden_size, big.num_layers, big.num_heads, big.intermediate_size)
  assert shape == (8192, 100, 64, 28672)
  assert big.cross_attention_layers == tuple(range(3, 100, 5))
  assert big.layer_pattern() == (20, BLOCK)


def test_tiny_matches_the_embedded_tokenizer_layout():
  tiny = presets.get("tiny")
  assert tiny.text.vocab_size == 2048 and tiny.text.num_embeddings == 2056
  assert tiny.image_token_id == 2048 and tiny.text.layer_pattern() == (1, BLOCK)
  assert 50e6 < mllama.param_count(presets.get("small")) < 150e6


def test_preset_names_are_one_list_and_config_files_stay_jax_free(repo_root):
  assert config_lib.PRESETS == presets.NAMES
  with pytest.raises(ValueError, match="unknown model preset 'huge'"):
    presets.get("huge")
  code = ("import sys; from configs import gp; gp.get_config('vl,small');"
          " print('jax' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True,
                       timeout=60, check=True)
  assert out.stdout.strip() == "False"
