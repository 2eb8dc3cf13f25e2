"""Multi-process RL for real: two JAX processes on localhost (gloo collectives) evaluate as
one process does, and train PPO together - each stepping its own episodes into one global
batch - resumably."""

import json
import subprocess
import sys

import numpy as np

import multihost_rl_worker
import tiny_rl
from test_multihost import _free_port


def test_two_process_rl_run(repo_root, tmp_path):
  port, worker = _free_port(), repo_root / "tests" / "multihost_rl_worker.py"
  procs = [subprocess.Popen([sys.executable, str(worker), str(i), str(port), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:  # the one-process evaluation over the same 8 devices, while the workers run
    want = multihost_rl_worker.eval_answers(
        multihost_rl_worker.eval_config(tiny_rl.config(repo_root)))
  finally:
    outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]

  got = json.loads((tmp_path / "eval_answers.json").read_text())
  assert got == want

  with open(tmp_path / "run" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [1, 2]
  for r in records:  # the rollout metrics count both processes' 2 x 8 generations
    assert r["rollout/generations"] == 16 and np.isfinite(r["ppo/value_loss"])
    assert r["train/tokens_buffer"] > 0
  assert "eval/id/success" in records[-1] and records[-1]["eval/id/episodes"] == 5
  assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
