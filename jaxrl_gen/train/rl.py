"""The RL host loop: rollout -> re-score -> returns -> `ppo_update` -> log -> evaluate ->
checkpoint, `config.ppo.num_updates` times.

    run_rl(config, workdir)      # jaxrl-gen train --config=configs/gp.py:l,rl,... --workdir=...

One update: `ppo.num_steps // ppo.num_envs` batched turns of the process's `ppo.num_envs`
lock-step episodes (`rollout.collect`), the buffer's no-grad re-scoring (old log-probs and
values, `learner.rescore`), GAE over each slot's turns with the value of the state after the
last turn as bootstrap, then the jitted update. Episodes cross update boundaries, as the
reference's do; the episodes in flight are checkpointed with the train state (per process),
so a killed run resumes exactly: the same episodes, keys and parameters.

Multi-process: each process steps its own episodes (its own stream) and samples its own
rows; the processes agree on the buffer's (P, L), and the re-scoring, the bootstrap value
and the update each run over every process's rows as one global batch
(`make_array_from_process_local_data`), each process reading back its own rows. Rollout
metrics are gathered from all processes; evaluation replicates its episodes on every process
and splits each turn's sampling between them (`ModelPolicy.__call__`).

Compute is counted as the paper does (`reference.md` §6): `train/flops` = 6 N D_RL + 2 N
D_buffer, D_RL the tokens of the PPO passes with gradients (sequence tokens x epochs), and
D_buffer the tokens the rollout runs forward (prompts and outputs) plus the re-scoring's.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import pickle
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_gen import envs, eval as eval_lib, metrics as metrics_lib, parallel, sampling
from jaxrl_gen.envs import batch as batch_lib
from jaxrl_gen.models import mllama
from jaxrl_gen.policy import ModelPolicy
from jaxrl_gen.text import processor as processor_lib
from jaxrl_gen.train import learner, loop as sft_loop, ppo, restore, rollout
from jaxrl_gen.train import state as state_lib
from jaxrl_gen.train import steps as steps_lib

class RolloutState:
  """What a rollout carries from one update to the next: the lock-step episodes in flight and
  the largest buffer shape so far (prompt, output, image slots). Checkpointed as the
  per-process data item (`get_state` bytes at save, `set_state` at restore); the pickle is
  this run's own file in its own workdir."""

  def __init__(self, runner: batch_lib.LockstepEpisodes):
    self.runner = runner
    self.shape = (0, 0, 0)

  def get_state(self) -> bytes:
    state = (self.runner.next_episode, self.runner.slots, self.shape)
    return base64.b64encode(pickle.dumps(state))

  def set_state(self, state: bytes):
    self.runner.next_episode, self.runner.slots, self.shape = pickle.loads(
        base64.b64decode(state))

  def start_prefetch(self):  # what the checkpoint handler calls after a restore
    pass


@dataclasses.dataclass
class Trainer:
  """What stays fixed over a run: the policy of a state, the buffer of a rollout, and that
  buffer as the update's global batch."""

  config: object
  built: steps_lib.Built
  processor: processor_lib.Processor
  cfg: ppo.PPOConfig
  mesh: jax.sharding.Mesh
  num_params: int
  ref_params: object = None  # the initial parameters, for the KL term

  @property
  def graphdef(self) -> nnx.GraphDef:
    return self.built.graphdef

  @property
  def rules(self):
    return self.built.model_config.rules

  @property
  def temperature(self) -> float:
    return steps_lib.rollout_temperature(self.config)

  def policy(self, state: state_lib.TrainState, *, evaluation: bool = False) -> ModelPolicy:
    """The state's policy: sampling as the rollouts do, or as `config.sampling` says
    (`evaluation`)."""
    net = nnx.merge(self.graphdef, state.params, state.frozen, state.rest)
    kwargs = sampling.kwargs_from_config(self.config.sampling)
    if not evaluation:
      kwargs["temperature"] = self.temperature
    return ModelPolicy(net.model, self.processor, mesh=self.mesh, sampling_kwargs=kwargs)

  @property
  def scorer(self) -> learner.RowScorer:
    return learner.RowScorer(self.built["rescore"], self.built["value"], self.mesh, self.rules)

  def buffer(self, state, policy: ModelPolicy, carried: RolloutState, key, timings
             ) -> tuple[dict, dict]:
    """One rollout of this process's episodes as its part of the update's buffer (host
    arrays), and the metrics of every process's rollout."""
    config, cfg, runner = self.config, self.cfg, carried.runner
    turns = config.ppo.num_steps // config.ppo.num_envs
    steps = rollout.collect(policy, runner, turns, key, timings)
    with timings.phase("rescore"):
      multiple = config.ppo.length_multiple
      needed = rollout.buffer_shape([t.payload for step in steps for t in step], multiple)
      # Every process's rows join one global batch: the (P, L, image slots) of the largest
      # anywhere.
      carried.shape = tuple(int(n) for n in parallel.process_max(
          np.maximum(needed, carried.shape)))
      buffer = rollout.to_buffer(steps, self.processor, rule=config.ppo.action_span,
                                 task=config.task, multiple=multiple,
                                 min_shape=carried.shape)
      if "pixel_values" in buffer:  # the images of every transition, in the compute dtype
        buffer["pixel_values"] = buffer["pixel_values"].astype(self.built.model_config.dtype)
      chunk = config.ppo.rescore_chunk
      scored = self.scorer.rescore(state, buffer, chunk=chunk)
      if cfg.kl_coef:
        buffer["ref_token_logp"] = self.scorer.rescore(
            state, buffer, params=self.ref_params, chunk=chunk)["token_logp"]
      bootstrap = policy.generate(runner.conversations(), jax.random.fold_in(key, turns),
                                  max_new_tokens=1)
      next_value = self.scorer.value(state, np.stack([g.prompt_hidden for g in bootstrap]))
      shape = buffer["rewards"].shape
      advantages, returns = ppo.compute_advantages(
          buffer["rewards"], scored["old_value"].reshape(shape), buffer["terminated"],
          buffer["truncated"], next_value, cfg)
    buffer.update(old_logp=scored["old_logp"], old_value=scored["old_value"],
                  advantages=np.asarray(advantages).reshape(-1),
                  returns=np.asarray(returns).reshape(-1))
    success = eval_lib.GP_SUCCESS_REWARD if config.task == "gp" else None
    table = parallel.process_allgather(rollout.stat_table(steps, success))
    return buffer, rollout.episode_stats(table.reshape(-1, table.shape[-1]))

  def to_device(self, buffer: dict) -> dict:
    """The rows the update reads, of every process, as one global batch (rows over the data
    shards)."""
    keys = learner.update_keys("pixel_values" in buffer, kl=self.cfg.kl_coef > 0)
    return parallel.global_batch({k: buffer[k] for k in keys}, self.mesh, self.rules,
                                 {k: learner.row_axes(k) for k in keys})


def run_rl(config, workdir: str) -> state_lib.TrainState:
  """Trains (or resumes) the PPO run of `config` in `workdir`; returns the final state."""
  mesh = parallel.make_mesh(config.mesh.shape)
  model, processor = restore.load_with_processor(config, config.ppo.init, mesh)
  model_config = model.config
  sft_loop.write_run_files(config, model_config, workdir)
  cfg = ppo.PPOConfig.from_config(config.ppo)
  built = steps_lib.rl(config, mesh, model_config)
  net = learner.actor_critic(model, tuple(config.ppo.value_hidden), seed=config.seed)
  _, state = state_lib.create(net, built.tx, seed=config.seed, freeze=cfg.freeze)
  del model, net
  state = jax.device_put(state, built.shardings)
  run = Trainer(config, built, processor, cfg, mesh, mllama.param_count(model_config),
                ref_params=jax.tree.map(jnp.copy, state.params) if cfg.kl_coef else None)

  env = envs.get(config.task)
  runner = batch_lib.LockstepEpisodes(
      env, envs.params_from_config(config), config.ppo.num_envs,
      batch_lib.EpisodeStream(config.seed, stream=jax.process_index()))
  carried = RolloutState(runner)
  state, start, checkpoints, writer = sft_loop.resume(config, workdir, state, carried)
  totals = {k: sft_loop.last_value(writer.path, k, start)
            for k in ("train/tokens_trained", "train/tokens_buffer", "train/flops")}
  update = built["ppo_update"]
  run_key = jax.random.wrap_key_data(jax.device_get(state.rng))  # the state is donated

  total = config.ppo.num_updates
  bar = metrics_lib.progress(total, start, config.log.progress)
  for step in range(start, total):
    started, timings = time.perf_counter(), rollout.Timings()
    key = jax.random.fold_in(run_key, step)
    policy = run.policy(state)
    buffer, record = run.buffer(state, policy, carried, jax.random.fold_in(key, 0), timings)
    sequence_tokens = float(parallel.process_allgather(buffer["attention_mask"].sum()).sum())
    trained = sequence_tokens * cfg.ppo_epochs
    scored = sequence_tokens * (2 if cfg.kl_coef else 1)
    with timings.phase("update"):
      state, update_metrics = update(state, run.to_device(buffer), jax.random.fold_in(key, 1))
      update_metrics = jax.device_get(update_metrics)
    totals["train/tokens_trained"] += trained
    totals["train/tokens_buffer"] += record.pop("rollout/tokens") + scored
    totals["train/flops"] = (
        metrics_lib.training_flops(run.num_params, totals["train/tokens_trained"])
        + metrics_lib.inference_flops(run.num_params, totals["train/tokens_buffer"]))
    record.update({f"ppo/{k}": float(v) for k, v in update_metrics.items()})
    record.update(totals)
    record["train/lr"] = float(ppo.learning_rate(cfg)(int(state.step) - 1))
    done = step + 1
    every = config.ppo.eval_every
    if every and (done % every == 0 or done == total):
      with timings.phase("eval"):
        results = eval_lib.evaluate(run.policy(state, evaluation=True), config,
                                    log_dir=os.path.join(workdir, "eval", str(done)),
                                    key=jax.random.fold_in(key, 2))
      record.update(eval_lib.flat_metrics(results))
    record.update({f"time/{k}": v for k, v in timings.items()})
    record["time/total"] = time.perf_counter() - started
    writer.write(done, record)
    bar.set_postfix(reward=f"{record['rollout/reward']:.3f}")
    checkpoints.save(done, state, carried, force=done == total)
    bar.update(1)
  sft_loop.finish(bar, checkpoints, writer)
  return state
