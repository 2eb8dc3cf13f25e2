"""The SFT host loop: data -> jitted, sharded `sft_step` -> metrics, evaluation, checkpoints.

    run_sft(config, workdir)

Resumes automatically from the latest checkpoint in `<workdir>/checkpoints` (parameters,
optimizer state, step, RNG and the data iterator's position), so a killed run continues
exactly as if it had never stopped. Writes `<workdir>/config.json`, `model_config.json` (the
model's shapes, for `restore.load_model`), `metrics.jsonl` and TensorBoard events; records
are means over each `log.every` interval (aligned with the checkpoints when `log.every`
divides `checkpoint.every`). Every `sft.eval_every` steps the evaluation hooks run: the
held-out loss and, with `sft.eval_episodes`, sampled episodes of config.eval's benchmarks.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import grain
import jax
import numpy as np
from flax import nnx

from jaxrl_gen import config_lib
from jaxrl_gen import metrics as metrics_lib
from jaxrl_gen import parallel
from jaxrl_gen.data import pipeline, sources as sources_lib
from jaxrl_gen.models import mllama
from jaxrl_gen.text import processor as processor_lib
from jaxrl_gen.train import optim, restore, sft
from jaxrl_gen.train import run as run_lib
from jaxrl_gen.train import state as state_lib
from jaxrl_gen.train import steps as steps_lib

EvalHook = Callable[[int, state_lib.TrainState], dict]


def to_global(local: dict, mesh, rules) -> dict:
  """This process's rows -> global arrays sharded over the data shards."""
  axes = {k: sft.BATCH_AXES[k] for k in local}
  return parallel.global_batch(local, mesh, rules, axes)


def _datasets(config, workdir, processor, model_config):
  sources = sources_lib.from_config(config, workdir)
  if sources.has_images and model_config.vision is None:
    raise ValueError(f"the data have images but preset {config.model.preset!r} is text-only")
  count, index = jax.process_count(), jax.process_index()
  common = dict(
      processor=processor, max_length=config.data.max_length,
      seed=config_lib.seed_of(config, "data"),
      max_images=1 if sources.has_images else 0,
      image_size=model_config.vision.image_size if sources.has_images else 0,
      batch_size=config.sft.batch_size // count, process_index=index, process_count=count,
      last_only=sources.last_only)
  train = pipeline.sft_dataset(sources.train, sources.to_conversation, **common)
  test = None
  if sources.test is not None and len(sources.test) >= count:
    usable = grain.MapDataset.source(sources.test)[:len(sources.test) // count * count]
    test = pipeline.sft_dataset(usable, sources.to_conversation, shuffle=False, num_epochs=1,
                                drop_remainder=False, **common)
  return train, test, sources.has_images


def held_out_loss(test: grain.MapDataset, eval_step, mesh, rules, max_batches: int
                  ) -> EvalHook:
  """An evaluation hook: loss and accuracy on the test split (teacher forcing)."""
  def hook(step: int, state) -> dict:
    del step
    n = len(test) if not max_batches else min(max_batches, len(test))
    sums = [eval_step(state, to_global(test[i], mesh, rules)) for i in range(n)]
    sums = jax.device_get(sums)
    tokens = max(sum(s["tokens"] for s in sums), 1.0)
    return {"eval/loss": sum(s["loss_sum"] for s in sums) / tokens,
            "eval/accuracy": sum(s["correct"] for s in sums) / tokens}
  return hook


def sampled_eval(config, graphdef: nnx.GraphDef, processor: processor_lib.Processor, mesh,
                 workdir: str) -> EvalHook:
  """An evaluation hook that samples: `config.sft.eval_episodes` episodes of each benchmark
  config.eval names, answered by the current parameters with config.sampling's generation,
  scored by `jaxrl_gen.eval` (eval/id/success, parse_rate, ...); their JSONL logs go to
  <workdir>/eval/sft_step_<step>/."""
  from jaxrl_gen import eval as evaluation  # noqa: PLC0415  (the envs load on use)
  from jaxrl_gen import policy as policy_lib  # noqa: PLC0415
  from jaxrl_gen import sampling  # noqa: PLC0415

  benches = [dataclasses.replace(bench, episodes=min(bench.episodes, config.sft.eval_episodes))
             for bench in evaluation.benchmarks(config)]
  sampling_kwargs = sampling.kwargs_from_config(config.sampling)

  def hook(step: int, state) -> dict:
    model = nnx.merge(graphdef, state.params, state.frozen, state.rest)
    policy = policy_lib.ModelPolicy(model, processor, sampling_kwargs=sampling_kwargs,
                                    mesh=mesh)
    results = evaluation.evaluate(policy, config, benches=benches,
                                  log_dir=os.path.join(workdir, "eval", f"sft_step_{step}"))
    return evaluation.flat_metrics(results)
  return hook


def run_sft(config, workdir: str, hooks: list[EvalHook] | None = None,
            allow_changes: bool = False, desc: str | None = None,
            job: metrics_lib.JobClock | None = None) -> state_lib.TrainState:
  """Trains (or resumes) the SFT run of `config` in `workdir`; returns the final state
  (`desc` labels the progress bar, `job` the whole job's it is a phase of)."""
  changes = run_lib.check_workdir(config, workdir, allow_changes)
  mesh = parallel.make_mesh(config.mesh.shape)
  model, processor = restore.load_with_processor(config, config.sft.init, mesh)
  model_config = model.config
  train_ds, test_ds, has_images = _datasets(config, workdir, processor, model_config)

  total = config.sft.steps
  built = steps_lib.sft(config, mesh, model_config, images=has_images)
  learning_rate = optim.schedule(config.optim, total)
  _, state = state_lib.create(model, built.tx, seed=config.seed, freeze=tuple(config.sft.freeze))
  del model
  graphdef, num_params = built.graphdef, mllama.param_count(model_config)
  state = jax.device_put(state, built.shardings)

  iterator = pipeline.iterator(train_ds, threads=config.data.threads, workers=config.data.workers)
  run = run_lib.Run(config, workdir, model_config, state, iterator, total, changes=changes,
                    totals=("train/tokens_seen",), desc=desc, job=job)
  state, start, bar = run.state, run.start, run.bar
  tokens_seen = run.totals["train/tokens_seen"]

  train_step, eval_step = built["sft_step"], built["sft_eval"]
  hooks = list(hooks or [])
  if test_ds is not None and config.sft.eval_every:
    hooks.insert(0, held_out_loss(test_ds, eval_step, mesh, model_config.rules,
                                  config.sft.eval_batches))
  if config.sft.eval_episodes and config.sft.eval_every:
    hooks.append(sampled_eval(config, graphdef, processor, mesh, workdir))

  throughput = metrics_lib.Throughput(num_params)
  pending: list[dict] = []
  for step in range(start, total):
    local = next(iterator)
    state, step_metrics = train_step(state, to_global(local, mesh, model_config.rules))
    pending.append(step_metrics)
    done = step + 1
    if done % config.log.every == 0 or done == total:
      values = _mean(jax.device_get(pending))
      pending = []
      interval_tokens = values.pop("tokens_sum")
      tokens_seen += interval_tokens
      throughput.add(interval_tokens)
      record = {f"train/{k}": v for k, v in values.items()}
      record.update({f"train/{k}": v for k, v in throughput.rates().items()})
      record.update({"train/lr": float(learning_rate(step)), "train/tokens_seen": tokens_seen,
                     "train/flops": metrics_lib.training_flops(num_params, tokens_seen)})
      run.log(done, record)
      bar.set_postfix(loss=f"{values['loss']:.4f}")
    if hooks and config.sft.eval_every and (done % config.sft.eval_every == 0 or done == total):
      evaluation = {}
      for hook in hooks:
        evaluation.update(hook(done, state))
      run.log(done, evaluation)
      throughput.reset()
    run.save(done, state, iterator)
    bar.update(1)
  run.finish()
  return state


def _mean(records: list[dict]) -> dict:
  out = {k: float(np.mean([r[k] for r in records])) for k in records[0]}
  out["tokens_sum"] = float(sum(r["tokens"] for r in records))
  return out
