"""The pod fit table of docs/pods.md: `jaxrl-gen aot --json` over presets x topologies x steps.

    python benchmarks/pod_fit.py --out=/tmp/fit.jsonl            # every row (an hour on 2 cores)
    python benchmarks/pod_fit.py --rows=1b --out=/tmp/fit.jsonl  # rows whose name has '1b'
    python benchmarks/pod_fit.py --table=/tmp/fit.jsonl          # markdown from saved results

Each row is one `jaxrl-gen aot` command (run as a subprocess, so the compiles do not share
memory); its JSON lines are appended to --out with the command beside them, and rows already
there are skipped, so an interrupted sweep resumes. The paper's shapes: SFT 128 x 1024 (one
4-tile image a row for the vision presets), PPO 256 transitions per host of 512 + 512
tokens, the sampler 512 + 512.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

GP_L, GP_VL = "configs/gp.py:l", "configs/gp.py:vl"
RL_SHAPES = ["--config.sampling.max_new_tokens=512"]
# (row name, config, topology, extra flags); the presets' own recipes unless flags say.
ROWS = [
    ("1b-sft-v5p8", f"{GP_L},sft,llama-3.2-1b", "v5p:2x2x2", []),
    ("1b-sft-v4-8", f"{GP_L},sft,llama-3.2-1b", "v4:2x2x2", []),
    ("1b-sft-v5e16", f"{GP_L},sft,llama-3.2-1b", "v5e:4x4", []),
    ("1b-rl-v5p8", f"{GP_L},rl,llama-3.2-1b", "v5p:2x2x2", RL_SHAPES),
    ("1b-rl-v4-8", f"{GP_L},rl,llama-3.2-1b", "v4:2x2x2", RL_SHAPES),
    ("1b-rl-v5e16", f"{GP_L},rl,llama-3.2-1b", "v5e:4x4", RL_SHAPES),
    ("11b-sft-v5p8", f"{GP_VL},sft,llama-3.2-11b-vision", "v5p:2x2x2", []),
    ("11b-rl-v5p8", f"{GP_VL},rl,llama-3.2-11b-vision", "v5p:2x2x2", RL_SHAPES),
    # GRPO keeps a frozen reference model beside the policy (no critic): its own fit
    ("11b-grpo-v5p8", f"{GP_VL},grpo,llama-3.2-11b-vision", "v5p:2x2x2", RL_SHAPES),
    ("11b-grpo-v5p8-g4", f"{GP_VL},grpo,llama-3.2-11b-vision", "v5p:2x2x2",
     RL_SHAPES + ["--config.grpo.groups=4", "--config.ppo.grad_accum=4"]),  # 32 rows a host
    ("11b-grpo-v5p8-mr32", f"{GP_VL},grpo,llama-3.2-11b-vision", "v5p:2x2x2",
     RL_SHAPES + ["--config.sampling.max_rows=32"]),  # 256 rows a host, sampled 32 at a time
    ("11b-sft-v4-16", f"{GP_VL},sft,llama-3.2-11b-vision", "v4:2x2x4", []),
    ("11b-rl-v4-16", f"{GP_VL},rl,llama-3.2-11b-vision", "v4:2x2x4", RL_SHAPES),
    ("11b-rl-v4-16-ga128", f"{GP_VL},rl,llama-3.2-11b-vision", "v4:2x2x4",
     RL_SHAPES + ["--config.ppo.grad_accum=128"]),  # the reference's micro-batches
    ("90b-sft-v5p32", f"{GP_VL},sft,llama-3.2-90b-vision", "v5p:4x4x2", []),
    ("11b-sft-v4-8", f"{GP_VL},sft,llama-3.2-11b-vision", "v4:2x2x2", ["--config.sft.accum=8"]),
    ("11b-rl-v4-8", f"{GP_VL},rl,llama-3.2-11b-vision", "v4:2x2x2", RL_SHAPES),
    ("11b-sft-v5e16", f"{GP_VL},sft,llama-3.2-11b-vision", "v5e:4x4", ["--config.sft.accum=8"]),
    ("90b-rl-v5p32", f"{GP_VL},rl,llama-3.2-90b-vision", "v5p:4x4x2", RL_SHAPES),
]


def command(config: str, topology: str, extra: list[str]) -> list[str]:
  return ["jaxrl-gen", "aot", f"--config={config}", f"--topology={topology}", "--json", *extra]


def run_rows(names: list[str], out: str) -> None:
  done = set()
  if os.path.exists(out):
    with open(out) as f:
      done = {json.loads(line)["row"] for line in f if line.strip()}
  for name, config, topology, extra in ROWS:
    if (names and not any(n in name for n in names)) or name in done:
      continue
    cmd = command(config, topology, extra)
    print("$", shlex.join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    error = proc.stderr.strip().splitlines()[-1] if proc.returncode and proc.stderr else ""
    with open(out, "a") as f:
      for record in lines or [{}]:
        f.write(json.dumps({"row": name, "command": shlex.join(cmd), "exit": proc.returncode,
                            "error": error, **record}) + "\n")
    for record in lines:
      print(f"  {record['function']}: peak {record['peak_gib_per_chip']:.1f} /"
            f" {record['hbm_gib_per_chip']:.4g} GiB, fits {record['fits']}", flush=True)
    if error:
      print("  " + error, flush=True)


def table(path: str) -> str:
  rows = ["| row | step | topology | mesh | peak GiB/chip | HBM | fits | est. step s | est. MFU |"
          " compile s |", "|---|---|---|---|---|---|---|---|---|---|"]
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  for r in records:
    if "function" not in r:
      rows.append(f"| {r['row']} | - | - | - | - | - | error: {r['error']} | | | |")
      continue
    rows.append(f"| {r['row']} | {r['function']} | {r['topology']} | {tuple(r['mesh'])} |"
                f" {r['peak_gib_per_chip']:.1f} | {r['hbm_gib_per_chip']:.4g} |"
                f" {'yes' if r['fits'] else 'no'} | {r['est_step_s']:.3g} |"
                f" {r['est_mfu']:.0%} | {r['compile_s']:.0f} |")
  return "\n".join(rows)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="pod_fit.jsonl")
  p.add_argument("--rows", default="", help="comma list: run rows whose name contains one")
  p.add_argument("--table", default="", help="print the markdown table of a results file")
  args = p.parse_args()
  if args.table:
    print(table(args.table))
    return
  run_rows([n for n in args.rows.split(",") if n], args.out)


if __name__ == "__main__":
  sys.exit(main())
