"""One process of a 2-process JAX run on localhost (run by tests/test_multihost.py).

    python tests/multihost_worker.py PROCESS_ID PORT OUT_DIR

Each process has 4 CPU devices; together they form the (2, 2, 2) mesh. Each process feeds
its own half of the batch (what per-host data loading does), the tiny Mllama runs sharded
across both, and process 0 writes the gathered logits to OUT_DIR/logits.npy. Then each
process samples for its own prompts (`multihost_inputs.SAMPLING_CALLS`) and writes its
rows of the results to OUT_DIR/sample_{call}_{process}.npz, and the errors of calls that
must fail on both processes (`multihost_inputs.bad_calls`) to OUT_DIR/errors_{process}.json.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrl_gen import parallel  # noqa: E402


def main(process_id: int, port: int, out_dir: str):
  parallel.initialize_distributed("manual", f"127.0.0.1:{port}", 2, process_id)
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  import multihost_inputs  # noqa: PLC0415  (beside this file)
  from jaxrl_gen import sampling  # noqa: PLC0415
  from jaxrl_gen.models import presets  # noqa: PLC0415

  assert jax.process_count() == 2 and jax.device_count() == 8
  config = presets.get("tiny")
  mesh = parallel.make_mesh((2, 2, 2))
  model = multihost_inputs.model(config, mesh)
  inputs = multihost_inputs.inputs()
  rows = len(inputs["input_ids"]) // 2
  local = {k: v[process_id * rows:(process_id + 1) * rows] for k, v in inputs.items()}
  axes = {k: ("batch",) + (None,) * (v.ndim - 1) for k, v in local.items()}
  batch = parallel.global_batch(local, mesh, config.rules, axes)
  with jax.set_mesh(mesh):
    logits = multihost_inputs.forward(model, batch)
  assert not logits.is_fully_addressable  # really spread over both processes
  gathered = parallel.to_host(logits)
  if process_id == 0:
    np.save(os.path.join(out_dir, "logits.npy"), gathered)

  for c, call in enumerate(multihost_inputs.SAMPLING_CALLS):
    prompts, image_rows = multihost_inputs.sampling_rows(call)[process_id]
    result = multihost_inputs.generate(model, prompts, image_rows, call, mesh)
    np.savez(os.path.join(out_dir, f"sample_{c}_{process_id}.npz"),
             **{k: v for k, v in vars(result).items() if v is not None})

  errors = {}
  for name, kwargs in multihost_inputs.bad_calls(
      process_id, mesh, parallel.make_mesh((1, 1, 8))).items():
    try:
      sampling.generate(model, **kwargs)
      errors[name] = "no error"
    except ValueError as e:
      errors[name] = str(e)
  with open(os.path.join(out_dir, f"errors_{process_id}.json"), "w") as f:
    json.dump(errors, f)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
