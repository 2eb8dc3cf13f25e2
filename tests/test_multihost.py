"""The multi-host code path for real: two JAX processes on localhost (gloo collectives), each
feeding its half of the batch, give the logits of one process over the same 8 devices; and
each sampling for its own prompts, they get the rows one process sampling for all gets."""

import json
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import multihost_inputs
from jaxrl_gen import parallel
from jaxrl_gen.models import presets


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(repo_root, tmp_path):
  port, worker = _free_port(), repo_root / "tests" / "multihost_worker.py"
  procs = [subprocess.Popen([sys.executable, str(worker), str(i), str(port), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:  # the one-process references, while the workers run
    config = presets.get("tiny")
    mesh = parallel.make_mesh((2, 2, 2))
    model = multihost_inputs.model(config, mesh)
    with jax.set_mesh(mesh):
      want_logits = multihost_inputs.forward(
          model, {k: jnp.asarray(v) for k, v in multihost_inputs.inputs().items()})
    rows = [multihost_inputs.sampling_rows(call) for call in multihost_inputs.SAMPLING_CALLS]
    want_samples = [
        multihost_inputs.generate(model, [p for ps, _ in r for p in ps],
                                  [i for _, rs in r for i in rs], call, mesh)
        for r, call in zip(rows, multihost_inputs.SAMPLING_CALLS)]
  finally:
    outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]

  got = np.load(tmp_path / "logits.npy")
  assert got.shape == want_logits.shape
  np.testing.assert_allclose(got, np.asarray(want_logits), atol=1e-5, rtol=0)

  for c, (r, want) in enumerate(zip(rows, want_samples)):
    parts = [np.load(tmp_path / f"sample_{c}_{i}.npz") for i in range(2)]
    assert [len(part["tokens"]) for part in parts] == [len(ps) for ps, _ in r]
    for name in ("tokens", "lengths", "finished"):
      np.testing.assert_array_equal(np.concatenate([part[name] for part in parts]),
                                    getattr(want, name), err_msg=f"call {c}: {name}")
    for name in ("logprobs", "prompt_hidden"):
      np.testing.assert_allclose(np.concatenate([part[name] for part in parts]),
                                 getattr(want, name), atol=1e-5, rtol=0,
                                 err_msg=f"call {c}: {name}")

  errors = [json.loads((tmp_path / f"errors_{i}.json").read_text()) for i in range(2)]
  assert "process(es) [1] rejected their arguments" in errors[0]["rejected"]
  assert "token id 5000 outside" in errors[1]["rejected"]
  for e in errors:
    assert "disagree on the sampling settings" in e["settings"]
    assert "must split the batch axes" in e["unsplit"]
