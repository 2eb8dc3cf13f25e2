"""Killing a training run (SIGKILL, at a random step after a checkpoint) and restarting it
gives exactly the losses of an uninterrupted run, step for step (CPU, fp32)."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from jaxrl_gen import metrics

# 6 steps of 4 rows from 16 episodes: checkpoints at steps 2, 4 and 6, a kill anywhere in
# steps 3-5, and the second epoch starting at step 5 (the resumed run must continue the
# shuffled order across the epoch boundary too).
STEPS = 6


def _command(workdir, data_dir):
  return [sys.executable, "-m", "jaxrl_gen", "train", "--config=configs/gp.py:l,sft,tiny",
          f"--workdir={workdir}", f"--config.data.dir={data_dir}",
          f"--config.sft.steps={STEPS}", "--config.sft.batch_size=4", "--config.sft.eval_every=0",
          "--config.data.train_size=16", "--config.data.eval_size=0", "--config.log.every=1",
          "--config.checkpoint.every=2", "--config.log.progress=False",
          "--config.model.dtype=float32"]


def _losses(workdir):
  records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return [(r["step"], r["train/loss"], r["train/grad_norm"]) for r in records]


@pytest.mark.slow  # three CLI runs of the tiny preset: ~40 s on 2 idle cores
def test_kill_and_resume_gives_the_uninterrupted_losses(tmp_path, repo_root):
  # One persistent compilation cache for the three runs: the later two load the first one's
  # executables (the same programs, so the same numbers) instead of compiling again.
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
  data = tmp_path / "data"
  full, killed = tmp_path / "full", tmp_path / "killed"
  subprocess.run(_command(full, data), check=True, cwd=repo_root, env=env,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  expected = _losses(full)
  assert [s for s, *_ in expected] == list(range(1, STEPS + 1))

  kill_at = random.Random().randint(3, STEPS - 1)  # past the first checkpoint (step 2)
  process = subprocess.Popen(_command(killed, data), cwd=repo_root, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  log = killed / "metrics.jsonl"
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline and process.poll() is None:
    if (log.exists() and any(r["step"] >= kill_at for r in metrics.read_jsonl(log))
        and _saved_steps(killed)):
      break
    time.sleep(0.05)
  assert process.poll() is None, "the run ended before it could be killed"
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  assert max(s for s, *_ in _losses(killed)) < STEPS
  saved = _saved_steps(killed)
  assert saved

  resumed = subprocess.run(_command(killed, data), check=True, cwd=repo_root, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  assert f"resumed from the checkpoint of step {max(saved)}" in resumed.stderr
  assert _losses(killed) == expected, f"killed at step {kill_at}"


def _saved_steps(workdir):
  """Steps of the finalized checkpoints (orbax renames a finished save to its step)."""
  directory = workdir / "checkpoints"
  if not directory.exists():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
