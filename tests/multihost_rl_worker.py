"""One process of a 2-process RL run on localhost (run by tests/test_multihost_rl.py).

    python tests/multihost_rl_worker.py PROCESS_ID PORT OUT_DIR

Each process has 4 CPU devices; together they form an 8-way data mesh. First both evaluate
the randomly initialised tiny policy on a few GP-L episodes (replicated episodes, each
process sampling its share of every turn) and process 0 writes the answers to
OUT_DIR/eval_answers.json; then they train `tiny_rl`'s PPO run for 2 updates (each process
its own episodes, one global batch) with an evaluation at the end, into OUT_DIR/run, and
run it again, which must restore every process's episodes in flight and stop.
"""

import json
import os
import pathlib
import sys

if __name__ == "__main__":  # a worker: 4 CPU devices of its own, set before JAX loads
  os.environ.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                    HF_HUB_OFFLINE="1")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxrl_gen import parallel  # noqa: E402


def eval_config(config):
  with config.unlocked():
    config.mesh.shape = (-1, 1, 1)
    config.eval.benchmarks, config.eval.episodes, config.eval.batch_size = "id", 5, 4
    config.eval.verify_iter = 2  # two answers an episode: the second sees the first's feedback
    config.ppo.grad_accum, config.ppo.eval_every = 1, 2
    config.ppo.ppo_epochs = 1  # the update's collectives run in each of its minibatches alike
  return config


def eval_answers(config) -> list[str]:
  """The answers of the randomly initialised policy on `config`'s first benchmark."""
  import jax  # noqa: PLC0415

  from jaxrl_gen import eval as eval_lib, sampling  # noqa: PLC0415
  from jaxrl_gen.policy import ModelPolicy  # noqa: PLC0415
  from jaxrl_gen.train import restore  # noqa: PLC0415

  mesh = parallel.make_mesh(config.mesh.shape)
  model, processor = restore.load_with_processor(config, "", mesh)
  policy = ModelPolicy(model, processor, mesh=mesh,
                       sampling_kwargs=sampling.kwargs_from_config(config.sampling))
  transitions = eval_lib.run(policy, eval_lib.benchmarks(config)[0],
                             batch_size=config.eval.batch_size, key=jax.random.key(7))
  return [t.answer for t in transitions]


def main(process_id: int, port: int, out_dir: str):
  parallel.initialize_distributed("manual", f"127.0.0.1:{port}", 2, process_id)
  import jax  # noqa: PLC0415

  import tiny_rl  # noqa: PLC0415  (beside this file)
  from jaxrl_gen.train import rl  # noqa: PLC0415

  assert jax.process_count() == 2 and jax.device_count() == 8
  # A persistent compilation cache (JAX writes it from process 0; both read it): the run
  # loads the model initializer the evaluation compiled, the rerun what the run compiled
  # (run_rl builds its steps afresh).
  jax.config.update("jax_compilation_cache_dir", os.path.join(out_dir, "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  config = eval_config(tiny_rl.config(ROOT))
  answers = eval_answers(config)
  if process_id == 0:
    with open(os.path.join(out_dir, "eval_answers.json"), "w") as f:
      json.dump(answers, f)

  workdir = os.path.join(out_dir, "run")
  first = rl.run_rl(config, workdir)
  again = rl.run_rl(config, workdir)
  assert int(again.step) == int(first.step) > 0


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
