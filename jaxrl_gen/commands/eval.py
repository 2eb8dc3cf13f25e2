"""`jaxrl-gen eval`: the benchmarks of `config.eval` answered by a model.

    jaxrl-gen eval --config=configs/gp.py:l,tiny --checkpoint=runs/gp_l_sft
    jaxrl-gen eval --config=configs/gp.py:vl,llama-3.2-11b-vision --checkpoint=/ckpt/GP-VL-Init \
        --workdir=runs/gp_vl_init --config.eval.benchmarks=id,visual_ood

--checkpoint: a `jaxrl-gen train` run directory (its latest checkpoint) or one of its step
directories `<run>/checkpoints/<step>`, a `jaxrl-gen convert` orbax model, or a Hugging Face
model directory (`jaxrl_gen.train.restore`), local or a URL (gs://...; so may the workdir
be); without it, a randomly initialised model of `config.model` (seed config.seed), with a
warning. The config may be of any mode.

Each benchmark's episodes are answered in lock-step batches of `config.eval.batch_size`, one
`sampling.generate` call per turn with `config.sampling`'s settings (the reference's
evaluation samples at T 0.6, top-p 0.9 with 256 new tokens [inferred, `reference.md` §6]:
`--config.sampling.temperature=0.6 --config.sampling.top_p=0.9
--config.sampling.max_new_tokens=256`). Writes `<workdir>/eval/<benchmark>.jsonl` (the
reference's step log, `jaxrl_gen.eval`) and `<workdir>/eval/results.json`, and prints the
table. The workdir defaults to the run directory when evaluating one, else
runs/<task>_<variant>_eval. Each benchmark's log gains every episode as it ends; the same
command run again (same checkpoint, same config) resumes there and runs only the episodes
left, with the results an uninterrupted run gives. A checkpoint that is missing or holds no
model is a one-line error (exit status 2); a run's newest checkpoint that does not restore is
skipped for the newest that does (a one-line warning), and a model of other shapes than
config.model.preset says which it is.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags, logging
from etils import epath

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Model to evaluate: a run directory (latest checkpoint), a run's "
    "checkpoints/<step> directory, an orbax model or a Hugging Face directory. Default: random "
    "init.")
_PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar per benchmark.")

EVAL_DIR = "eval"
RESULTS = "results.json"


def default_workdir(config, checkpoint: str | None) -> str:
  from jaxrl_gen.train import restore  # noqa: PLC0415  (imports JAX)

  run = restore.run_checkpoint(checkpoint) if checkpoint else None
  if run is not None:
    return run[0]
  return os.path.join("runs", f"{config.task}_{config.variant}_eval")


def prepare(config, checkpoint: str | None):
  """(benchmarks, policy): the checks and the loading, each failure a one-line error."""
  from jaxrl_gen import eval as evaluation  # noqa: PLC0415  (imports JAX)
  from jaxrl_gen import parallel, policy as policy_lib, sampling  # noqa: PLC0415
  from jaxrl_gen.train import restore  # noqa: PLC0415

  benches = evaluation.benchmarks(config)  # bad benchmark settings fail before any loading
  if not checkpoint:
    logging.warning("no --checkpoint: evaluating a randomly initialised %s model (seed %d)",
                    config.model.preset, config.seed)
  mesh = parallel.make_mesh(config.mesh.shape)
  model, processor = restore.load_with_processor(config, checkpoint or "", mesh)
  policy = policy_lib.ModelPolicy(model, processor, mesh=mesh,
                                  sampling_kwargs=sampling.kwargs_from_config(config.sampling))
  return benches, policy


def run(config, checkpoint: str | None, benches, policy, workdir: str, *,
        progress: bool = False) -> dict:
  """Runs the benchmarks; writes their logs and results.json under `<workdir>/eval`."""
  from jaxrl_gen import eval as evaluation  # noqa: PLC0415
  from jaxrl_gen.train import restore  # noqa: PLC0415

  log_dir = os.path.join(workdir, EVAL_DIR)
  source = restore.describe(checkpoint or "")  # after loading: the checkpoint really read
  identity = {"checkpoint": source, "config": json.loads(config.to_json_best_effort())}
  results = evaluation.evaluate(policy, config, log_dir=log_dir, benches=benches,
                                progress=progress, resume=identity)
  record = {"checkpoint": source, "task": config.task,
            "variant": config.variant, "sampling": policy.sampling_kwargs,
            "eval": config.eval.to_dict(), "results": results}
  (epath.Path(log_dir) / RESULTS).write_text(json.dumps(evaluation.json_safe(record), indent=2))
  return results


def main(config, workdir: str | None):
  from jaxrl_gen import eval as evaluation  # noqa: PLC0415
  from jaxrl_gen.models.hf_config import CheckpointError  # noqa: PLC0415

  if not flags.FLAGS["verbosity"].present:  # orbax logs every restore at INFO
    logging.set_verbosity(logging.WARNING)
  checkpoint = _CHECKPOINT.value
  try:
    workdir = workdir or default_workdir(config, checkpoint)
    benches, policy = prepare(config, checkpoint)
  except (CheckpointError, ValueError, FileNotFoundError) as e:
    print(f"jaxrl-gen: {e}", file=sys.stderr)
    sys.exit(2)
  results = run(config, checkpoint, benches, policy, workdir, progress=_PROGRESS.value)
  print(evaluation.format_table(results))
  print(f"logs and {RESULTS}: {os.path.join(workdir, EVAL_DIR)}")
