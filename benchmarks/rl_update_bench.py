"""Tokens/s of one RL update by loss, and of the scoring passes, on the same batch and machine:
PPO's turn-level update (the reference's loss, with the critic) is the peer the GRPO family's
token-level update (no critic) and the token-level PPO update are measured against, and the
policy's scoring pass the peer of the frozen reference model's (the KL term's extra pass).

    python benchmarks/rl_update_bench.py --preset=tiny-text --rows=64 --prompt=256 --output=128

Each update is the jitted `ppo_update` step `steps.rl` builds from `configs/gp.py` in that
mode (ppo_epochs 1, minibatches 2, grad_accum 2 for all three, so each is two optimizer steps
over the same rows), on a batch of random token rows (every output token scored); each scoring
pass is the jitted `rescore` step over the same rows. tokens/s counts every position of the
rows (padding included, the same for all) times the passes over them; the median of `--repeats`
timed calls after one compile-and-warm-up call.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from jaxrl_gen import parallel  # noqa: E402
from jaxrl_gen.models import mllama  # noqa: E402
from jaxrl_gen.train import learner, steps  # noqa: E402
from jaxrl_gen.train import state as state_lib  # noqa: E402
from jaxrl_gen.train.batch import RolloutBatch  # noqa: E402

LOSSES = {"turn_ppo": ("rl", "gae"), "token_ppo": ("rl", "gae"), "grpo_clip": ("grpo", "grpo")}


def gp_config(mode: str, preset: str, rows: int, loss: str, advantage: str):
  spec = importlib.util.spec_from_file_location("gp_config", ROOT / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(f"l,{mode},{preset}")
  with config.unlocked():
    config.model.dtype = "float32"
    config.ppo.update(loss=loss, advantage=advantage, ppo_epochs=1, minibatches=2,
                      grad_accum=2, kl_coef=0.04, rescore_chunk=rows, value_hidden=(256, 128))
    if mode == "grpo":
      config.grpo.groups, config.grpo.group_size = rows // 4, 4
    else:
      config.ppo.num_steps = config.ppo.num_envs = rows
  return config


def batch(rows: int, prompt: int, output: int, vocab: int, seed: int = 0) -> RolloutBatch:
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, vocab, (rows, prompt + output)).astype(np.int32)
  return RolloutBatch(
      input_ids=ids, attention_mask=np.ones_like(ids), output_ids=ids[:, prompt:].copy(),
      thought_mask=np.zeros((rows, output), np.float32),
      action_mask=np.ones((rows, output), np.float32), constant_logp=np.zeros(rows, bool),
      valid=np.ones(rows, bool), old_logp=rng.normal(-output, 1, rows).astype(np.float32),
      old_token_logp=rng.normal(-1, 0.1, (rows, output)).astype(np.float32),
      ref_token_logp=rng.normal(-1, 0.1, (rows, output)).astype(np.float32),
      old_value=rng.normal(size=rows).astype(np.float32),
      advantages=rng.normal(size=rows).astype(np.float32),
      returns=rng.normal(size=rows).astype(np.float32))


def timed(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="tiny-text")
  parser.add_argument("--rows", type=int, default=64)
  parser.add_argument("--prompt", type=int, default=256)
  parser.add_argument("--output", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  mesh = parallel.make_mesh((-1, 1, 1))
  tokens = args.rows * (args.prompt + args.output)
  results = {}
  for loss, (mode, advantage) in LOSSES.items():
    config = gp_config(mode, args.preset, args.rows, loss, advantage)
    built = steps.rl(config, mesh, prompt_length=args.prompt, output_length=args.output)
    model = mllama.create(built.model_config, seed=0)
    net = (learner.Policy(model) if mode == "grpo" else
           learner.actor_critic(model, tuple(config.ppo.value_hidden), seed=0))
    _, state = state_lib.create(net, built.tx, seed=0)
    state = jax.device_put(state, built.shardings)
    rows = batch(args.rows, args.prompt, args.output, built.model_config.text.vocab_size)
    fields = learner.update_fields(False, critic=mode != "grpo", kl=True,
                                   token_level=loss != "turn_ppo")
    device_rows = rows.only(fields).to_global(mesh, built.model_config.rules)
    update = built["ppo_update"]
    holder = {"state": state}

    def step():
      holder["state"], metrics = update(holder["state"], device_rows, jax.random.key(0))
      return metrics
    results[f"update/{loss}"] = tokens / timed(step, args.repeats)
    if loss == "turn_ppo":
      scoring = rows.only(learner.rescore_fields(False)).to_global(mesh,
                                                                   built.model_config.rules)
      params = jax.tree.map(lambda x: x.copy(), holder["state"].params)  # a frozen reference
      s = holder["state"]
      results["score/policy"] = tokens / timed(
          lambda: built["rescore"](s.params, s.frozen, s.rest, scoring), args.repeats)
      results["score/reference"] = tokens / timed(
          lambda: built["rescore"](params, s.frozen, s.rest, scoring), args.repeats)
  peer = results["update/turn_ppo"]
  print(f"{args.preset}, {args.rows} rows x ({args.prompt} + {args.output}) tokens, "
        f"{jax.device_count()} {jax.devices()[0].platform} devices")
  for name, rate in results.items():
    base = peer if name.startswith("update/") else results["score/policy"]
    print(f"  {name:<18} {rate:>12,.0f} tokens/s   {rate / base:.2f}x")


if __name__ == "__main__":
  main()
