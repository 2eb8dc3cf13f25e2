"""Forward throughput (and MFU on accelerators) of a model preset with random weights, against
transformers on the same weights and machine.

    python benchmarks/model_forward.py --preset=small --batch=4 --seq=256 --image
    python benchmarks/model_forward.py --preset=llama-3.2-11b-vision --dtype=bfloat16 --image \
        --peer=none        # on a GPU/TPU: tokens/s and MFU only

Model FLOPs are the paper's count for a forward, 2 N D (N parameters, D tokens), not XLA's
cost analysis, which counts a scanned body (the layers) once and so understates a scanned
model several times over; MFU divides achieved FLOP/s by the device's dense bf16 peak
(`--peak_tflops`, or `jaxrl_gen.chips`: TPU v4 / v5e / v5p ("TPU v5") / v6e, H100, H200,
A100). The peer is `transformers`' PyTorch model (eager attention) loaded from our
`save_pretrained` output, timed on the CPU; `--peer=none` skips it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jaxrl_gen import chips  # noqa: E402
from jaxrl_gen.models import hf, mllama, presets  # noqa: E402



def random_model(config) -> mllama.Model:
  """A random model of `config` whose cross-attention gates (0 at init) are open, so image
  layers cost what they cost in a trained model."""
  model = mllama.create(config, seed=0)
  if config.vision is not None:
    for j in model.language_model.cross_slots:
      layer = model.language_model.layers[j]
      layer.cross_attn_attn_gate[...] = jnp.full_like(layer.cross_attn_attn_gate[...], 0.5)
      layer.cross_attn_mlp_gate[...] = jnp.full_like(layer.cross_attn_mlp_gate[...], 0.5)
  return model


def _inputs(config, batch: int, seq: int, image: bool, rng: np.random.Generator) -> dict:
  ids = rng.integers(0, config.text.vocab_size, (batch, seq))
  if not image:
    return dict(input_ids=ids)
  v = config.vision
  ids[:, 1] = config.image_token_id
  tiles = v.max_num_tiles
  cross = np.zeros((batch, seq, 1, tiles), np.int64)
  cross[:, 1:] = 1
  pixels = rng.normal(size=(batch, 1, tiles, 3, v.image_size, v.image_size))
  return dict(input_ids=ids, pixel_values=pixels.astype(np.float32),
              aspect_ratio_ids=np.full((batch, 1), 6),  # 2x2 tiles
              aspect_ratio_mask=np.ones((batch, 1, tiles), np.int64), cross_attention_mask=cross)


def _time(fn, repeats: int) -> float:
  fn()  # compile / warm up
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - start) / repeats


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", default="small")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--image", action="store_true", help="one 4-tile image per row")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--peer", default="transformers", choices=["transformers", "none"])
  p.add_argument("--peak_tflops", type=float, default=None)
  args = p.parse_args()

  config = presets.get(args.preset, dtype=args.dtype, param_dtype=args.dtype)
  model = random_model(config)
  inputs = _inputs(config, args.batch, args.seq, args.image, np.random.default_rng(0))
  arrays = {k: jnp.asarray(v) for k, v in inputs.items()}
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(**x).logits)
  ours = _time(lambda: forward(state, arrays).block_until_ready(), args.repeats)
  tokens = args.batch * args.seq
  flops = 2.0 * mllama.param_count(config) * tokens
  device = jax.devices()[0]
  print(f"preset={args.preset} dtype={args.dtype} batch={args.batch} seq={args.seq}"
        f" image={args.image} device={device.device_kind} params={mllama.param_count(config):,}")
  print(f"jaxrl_gen: {ours * 1e3:.1f} ms/forward, {tokens / ours:,.0f} tokens/s,"
        f" {flops / ours / 1e12:.3f} model TFLOP/s (2ND)")
  chip = chips.lookup(device.device_kind)
  peak = args.peak_tflops or (chip.peak_flops / 1e12 if chip else None)
  if peak and device.platform != "cpu":
    print(f"MFU: {flops / ours / 1e12 / peak:.1%} of {peak} TFLOP/s")
  if args.peer == "none":
    return
  import torch  # noqa: PLC0415  (the peer only)
  import transformers  # noqa: PLC0415

  with tempfile.TemporaryDirectory() as tmp:
    hf.save_pretrained(model, tmp)
    cls = (transformers.MllamaForConditionalGeneration if config.vision
           else transformers.LlamaForCausalLM)
    peer = cls.from_pretrained(tmp, dtype=getattr(torch, args.dtype),
                               attn_implementation="eager").eval()
  torch_inputs = {k: torch.as_tensor(v) for k, v in inputs.items()}
  with torch.no_grad():
    theirs = _time(lambda: peer(**torch_inputs), args.repeats)
    want = peer(**torch_inputs).logits.float().numpy()
  diff = np.abs(want - np.asarray(forward(state, arrays))).max()
  print(f"transformers {transformers.__version__} (torch {torch.__version__},"
        f" {torch.get_num_threads()} threads): {theirs * 1e3:.1f} ms/forward,"
        f" {tokens / theirs:,.0f} tokens/s")
  print(f"speed ratio jaxrl_gen / transformers: {theirs / ours:.2f}x (max |logit diff| {diff:.1e})")


if __name__ == "__main__":
  main()
