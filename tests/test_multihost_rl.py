"""Multi-process RL for real: two JAX processes on localhost (gloo collectives) evaluate as
one process does, and train PPO together - each stepping its own episodes into one global
batch - resumably."""

import json
import subprocess
import sys

import jax
import numpy as np

import multihost_rl_worker
import tiny_rl
from jaxrl_gen import eval as eval_lib, parallel, sampling
from jaxrl_gen.policy import ModelPolicy
from jaxrl_gen.train import restore
from test_multihost import _free_port


def test_two_process_rl_run(repo_root, tmp_path):
  port, worker = _free_port(), repo_root / "tests" / "multihost_rl_worker.py"
  procs = [subprocess.Popen([sys.executable, str(worker), str(i), str(port), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:  # the one-process evaluation over the same 8 devices, while the workers run
    config = multihost_rl_worker.eval_config(tiny_rl.config(repo_root))
    mesh = parallel.make_mesh(config.mesh.shape)
    model, processor = restore.load_with_processor(config, "", mesh)
    policy = ModelPolicy(model, processor, mesh=mesh,
                         sampling_kwargs=sampling.kwargs_from_config(config.sampling))
    want = eval_lib.run(policy, eval_lib.benchmarks(config)[0],
                        batch_size=config.eval.batch_size, key=jax.random.key(7))
  finally:
    outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]

  got = json.loads((tmp_path / "eval_answers.json").read_text())
  assert got == [t.answer for t in want]

  with open(tmp_path / "run" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [1, 2]
  for r in records:  # the rollout metrics count both processes' 2 x 8 generations
    assert r["rollout/generations"] == 16 and np.isfinite(r["ppo/value_loss"])
    assert r["train/tokens_buffer"] > 0
  assert "eval/id/success" in records[-1] and records[-1]["eval/id/episodes"] == 5
  assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
