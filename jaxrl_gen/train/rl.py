"""The RL host loop, `ppo.num_updates` iterations of

    collect     the rollout's transitions: PPO, `ppo.num_steps // ppo.num_envs` lock-step turns
                of endless episodes (they cross update boundaries, as the reference's do); the
                GRPO family, whole episodes of `grpo.groups` prompts x `grpo.group_size` samples
    score       the no-grad pass over the rows (`learner.RowScorer`): old sequence and token
                log-probs, values (with a critic) and the bootstrap value of the states after
                the rollout (a prompt-only pass); the frozen reference model's token
                log-probs with a KL term
    advantages  by name, `ppo.advantage`: gae | grpo | drgrpo | rloo (`advantages.py`), on the
                reward `grpo.reward` names: verifier | majority | self_judge (`rewards.py`)
    update      the loss by name, `ppo.loss`: turn_ppo | token_ppo | grpo_clip
                (`token_loss.py`), `ppo.ppo_epochs` x `ppo.minibatches` optimizer steps
    log, evaluate, checkpoint   (`run.Run`)

    run_rl(config, workdir)      # jaxrl-gen train --config=configs/gp.py:l,rl,... --workdir=...

A killed run resumes exactly: the state, the keys, and what the rollout carries (the PPO
episodes in flight, as JSON data replayed through the pure env; the shapes reached). With
`ppo.flops_budget` the run ends (evaluated and checkpointed) after the update that brings its
training FLOPs to the budget, so runs of different shapes (e.g. `env.verify_iter` 1/3/5/10)
compare at equal compute.

Multi-process: each process steps its own episodes (its own stream) and samples its own
rows; the processes agree on the batch's shape, and the scoring and the update run over every
process's rows as one global batch, each process reading back its own rows. Rollout metrics
are gathered from all processes; evaluation replicates its episodes on every process.

Compute is counted as the paper does (`reference.md` §6): `train/flops` = 6 N D_RL + 2 N
D_buffer, D_RL the tokens of the passes with gradients (sequence tokens x epochs), and
D_buffer the tokens the rollout runs forward (prompts and outputs), the scoring passes' and
the judge's.
"""

from __future__ import annotations

import dataclasses
import json
import os
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
from jaxrl_gen.train import advantages as advantages_lib
from jaxrl_gen.train import judge as judge_lib
from jaxrl_gen.train import learner, ppo, restore, rewards, rollout
from jaxrl_gen.train import run as run_lib
from jaxrl_gen.train import state as state_lib
from jaxrl_gen.train import steps as steps_lib
from jaxrl_gen.train.batch import RolloutBatch

FORMAT = "jaxrl_gen.rollout.v2"


class RolloutState:
  """What a rollout carries from one update to the next: the lock-step episodes in flight
  (PPO; None for the GRPO family, whose episodes end within an update) and the largest batch
  shape so far (prompt, output, image slots, rows). Checkpointed as the per-process data item
  in JSON (`get_state` at save, `set_state` at restore): plain data, never code."""

  def __init__(self, runner: batch_lib.LockstepEpisodes | None):
    self.runner = runner
    self.shape = (0, 0, 0)
    self.rows = 0

  def get_state(self) -> bytes:
    return json.dumps({"format": FORMAT, "shape": list(self.shape), "rows": self.rows,
                       "episodes": self.runner and self.runner.get_state()}).encode()

  def set_state(self, state: bytes):
    try:
      saved = json.loads(state)
    except ValueError:
      saved = None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
      raise run_lib.RunError("the checkpoint's rollout state is not this version's JSON (an "
                             "older run pickled it; it is never unpickled): resume it with the "
                             "version that wrote it, or start a new --workdir")
    self.shape, self.rows = tuple(saved["shape"]), int(saved["rows"])
    if self.runner is not None:
      self.runner.set_state(saved["episodes"])

  def start_prefetch(self):  # what the checkpoint handler calls after a restore
    pass


@dataclasses.dataclass
class Trainer:
  """What stays fixed over a run, and the steps of one iteration."""

  config: object
  built: steps_lib.Built
  processor: processor_lib.Processor
  cfg: ppo.PPOConfig
  mesh: jax.sharding.Mesh
  num_params: int
  ref_params: object = None  # the initial parameters: the KL's reference and the judge

  @property
  def rules(self):
    return self.built.model_config.rules

  @property
  def grouped(self) -> bool:
    return self.cfg.advantage in advantages_lib.GROUP

  @property
  def token_level(self) -> bool:
    return self.cfg.loss != "turn_ppo"

  def policy(self, state: state_lib.TrainState, *, evaluation: bool = False,
             params=None) -> ModelPolicy:
    """The state's policy (or the model of `params`, e.g. the frozen judge): sampling as the
    rollouts do, or as `config.sampling` says (`evaluation`)."""
    net = nnx.merge(self.built.graphdef, state.params if params is None else params,
                    state.frozen, state.rest)
    kwargs = sampling.kwargs_from_config(self.config.sampling)
    if not evaluation:
      kwargs["temperature"] = steps_lib.rollout_temperature(self.config)
    return ModelPolicy(net.model, self.processor, mesh=self.mesh, sampling_kwargs=kwargs,
                       max_rows=self.config.sampling.max_rows)

  # --- collect ------------------------------------------------------------------------------

  def group_runner(self, env, env_params, update: int) -> batch_lib.LockstepEpisodes:
    """This update's groups: `grpo.groups` episodes of this process's stream, each played by
    `grpo.group_size` slots."""
    g = self.config.grpo
    stream = rollout.GroupStream(batch_lib.EpisodeStream(self.config.seed,
                                                         stream=jax.process_index()),
                                 g.group_size, offset=update * g.groups)
    slots = g.groups * g.group_size
    return batch_lib.LockstepEpisodes(env, env_params, slots, stream, num_episodes=slots)

  def rows(self, transitions, carried: RolloutState) -> RolloutBatch:
    """The transitions as rows shaped like every process's (the largest so far anywhere)."""
    config = self.config
    multiple = config.ppo.length_multiple
    needed = rollout.buffer_shape([t.payload for t in transitions], multiple)
    carried.shape = tuple(int(n) for n in parallel.process_max(
        np.maximum(needed, carried.shape)))
    return self.in_compute_dtype(rollout.to_rows(
        transitions, self.processor, rule=config.ppo.action_span, task=config.task,
        multiple=multiple, min_shape=carried.shape))

  def in_compute_dtype(self, batch: RolloutBatch) -> RolloutBatch:
    """The batch with its images (if any) in the model's compute dtype."""
    if batch.pixel_values is None:
      return batch
    return batch.replace(pixel_values=batch.pixel_values.astype(self.built.model_config.dtype))

  @property
  def scorer(self) -> learner.RowScorer:
    return learner.RowScorer(self.built["rescore"], self.mesh, self.rules,
                             self.config.ppo.rescore_chunk)

  # --- score --------------------------------------------------------------------------------

  def score(self, state, batch: RolloutBatch) -> tuple[RolloutBatch, float]:
    """The batch with its scoring passes' fields, and the tokens those passes read."""
    scorer = self.scorer
    scored = scorer(state, batch)
    fields = {"old_logp": scored["old_logp"], "old_value": scored.get("old_value")}
    if self.token_level:
      fields["old_token_logp"] = scored["token_logp"]
    passes = 1
    if self.cfg.kl_coef:
      fields["ref_token_logp"] = scorer(state, batch, params=self.ref_params)["token_logp"]
      passes = 2
    tokens = float(parallel.process_allgather(batch.attention_mask.sum()).sum())
    return batch.replace(**fields), tokens * passes

  def bootstrap_value(self, state, policy: ModelPolicy, runner, like: RolloutBatch
                      ) -> np.ndarray:
    """The critic's value of each slot's next state: a prompt-only scoring pass."""
    prompts = rollout.prompt_rows(policy.encode(runner.conversations()), self.processor, like)
    return self.scorer(state, self.in_compute_dtype(prompts))["old_value"]

  # --- advantages ---------------------------------------------------------------------------

  def episode_rewards(self, transitions, batch: RolloutBatch, judge, key
                      ) -> tuple[np.ndarray, dict, float]:
    """[groups, n] rewards of this process's episodes (each the return of one member), the
    reward metrics, and the tokens the judge read and wrote."""
    g, task = self.config.grpo, self.config.task
    n = g.group_size
    returns = np.zeros(g.groups * n)
    last = {}
    for row, t in enumerate(transitions):
      returns[t.episode] += t.reward
      last[t.episode] = (row, t)
    if self.cfg.kl_in_reward and self.cfg.kl_coef:
      tokens = (batch.thought_mask + batch.action_mask) > 0
      kl = np.where(tokens, batch.old_token_logp - batch.ref_token_logp, 0.0).sum(-1)
      for row, t in enumerate(transitions):
        returns[t.episode] -= self.cfg.kl_coef * kl[row]
    finals = [last[e][1] for e in range(g.groups * n)]
    verifier = returns.reshape(g.groups, n)
    metrics, judge_tokens = {}, 0.0
    if g.reward == "verifier":
      return verifier, metrics, judge_tokens
    answers = [rewards.answer_key(task, t.answer) for t in finals]
    groups = [answers[i * n:(i + 1) * n] for i in range(g.groups)]
    metrics["grpo/answer_rate"] = float(np.mean([a is not None for a in answers]))
    metrics["grpo/verifier_return"] = float(verifier.mean())
    if g.reward == "majority":
      return np.stack([rewards.majority_reward(a) for a in groups]), metrics, judge_tokens
    scores, judge_tokens = judge.scores([t.prompt for t in finals],
                                        [t.answer for t in finals], key)
    metrics["grpo/judge_score"] = float(scores.mean())
    out = np.stack([rewards.self_judged(a, scores[i * n:(i + 1) * n])
                    for i, a in enumerate(groups)])
    return out, metrics, float(judge_tokens)

  def group_advantages(self, transitions, batch: RolloutBatch, judge, key
                       ) -> tuple[RolloutBatch, dict, float]:
    """Each row's advantage: its episode's (`ppo.advantage` over the group's rewards)."""
    g = self.config.grpo
    reward, metrics, judge_tokens = self.episode_rewards(transitions, batch, judge, key)
    if g.reward == "self_judge" and g.judge_advantage == "log_softmax":
      advantage = rewards.group_log_softmax(reward, g.beta).astype(np.float32)
    else:
      scale = g.beta if g.reward == "self_judge" else 1.0
      advantage = advantages_lib.compute(self.cfg.advantage, scale * reward)
    flat = advantage.reshape(-1)
    rows = np.array([flat[t.episode] for t in transitions], np.float32)
    metrics.update({"grpo/reward": float(reward.mean()),
                    "grpo/reward_std": float(reward.std(axis=1).mean()),
                    "grpo/flat_groups": float((reward.std(axis=1) == 0).mean())})
    return batch.replace(advantages=rows), metrics, judge_tokens

  # --- update -------------------------------------------------------------------------------

  def to_device(self, batch: RolloutBatch) -> RolloutBatch:
    """The fields the update reads, of every process, as one global batch."""
    fields = learner.update_fields(batch.has_images, critic=not self.grouped,
                                   kl=self.cfg.kl_coef > 0 and not self.cfg.kl_in_reward,
                                   token_level=self.token_level)
    return batch.only(fields).to_global(self.mesh, self.rules)

  def group_batch(self, batch: RolloutBatch, carried: RolloutState) -> RolloutBatch:
    """The GRPO family's rows padded (not `valid`) to the row count every process agrees on:
    a multiple of the micro-batches x data shards, and the largest so far."""
    multiple = (self.cfg.minibatches * self.cfg.grad_accum
                * parallel.batch_shards(self.mesh, self.rules))
    needed = -(-batch.rows // multiple) * multiple
    carried.rows = int(parallel.process_max(np.array([max(needed, carried.rows)]))[0])
    padded = batch.pad_rows(carried.rows)
    return padded.take(slice(0, carried.rows))


def _iteration(run: Trainer, state, carried: RolloutState, env, env_params, judge, step: int,
               key, timings) -> tuple[RolloutBatch, dict, float]:
  """collect -> score -> advantages of one update: (the batch, the rollout's metrics, the
  tokens the forward-only passes read)."""
  config, cfg = run.config, run.cfg
  policy = run.policy(state)
  if run.grouped:
    transitions = rollout.collect_episodes(policy, run.group_runner(env, env_params, step),
                                           jax.random.fold_in(key, 0), timings)
  else:
    turns = config.ppo.num_steps // config.ppo.num_envs
    steps = rollout.collect(policy, carried.runner, turns, jax.random.fold_in(key, 0), timings)
    transitions = [t for s in steps for t in s]
  success = envs.task(config.task).success_reward
  table = parallel.process_allgather(rollout.stat_table(transitions, success))
  record = rollout.episode_stats(table.reshape(-1, table.shape[-1]))
  with timings.phase("score"):
    batch, forward = run.score(state, run.rows(transitions, carried))
  with timings.phase("advantages"):
    if run.grouped:
      batch, extra, judged = run.group_advantages(transitions, batch, judge,
                                                  jax.random.fold_in(key, 3))
      record.update(extra)
      forward += float(parallel.process_allgather(np.array([judged])).sum())
      batch = run.group_batch(batch, carried)
    else:
      shape = (len(steps), len(steps[0]))
      rewards_ = np.array([t.reward for t in transitions], np.float32).reshape(shape)
      terminated = np.array([t.terminated for t in transitions], bool).reshape(shape)
      truncated = np.array([t.truncated for t in transitions], bool).reshape(shape)
      next_value = run.bootstrap_value(state, policy, carried.runner, batch)
      advantages, returns = advantages_lib.gae(
          rewards_, batch.old_value.reshape(shape), terminated, truncated, next_value, cfg)
      batch = batch.replace(advantages=np.asarray(advantages).reshape(-1),
                            returns=np.asarray(returns).reshape(-1))
  return batch, record, forward


def keeps_reference(config) -> bool:
  """Whether the run holds a frozen copy of the initial parameters on its devices: the KL's
  reference, or the self-judged reward's judge."""
  grouped = config.ppo.advantage in advantages_lib.GROUP
  return bool(config.ppo.kl_coef) or (grouped and config.grpo.reward == "self_judge")


def run_rl(config, workdir: str, allow_changes: bool = False, desc: str | None = None,
           job: metrics_lib.JobClock | None = None) -> state_lib.TrainState:
  """Trains (or resumes) the RL run of `config` in `workdir`; returns the final state (`desc`
  labels the progress bar, `job` the whole job's it is a phase of)."""
  changes = run_lib.check_workdir(config, workdir, allow_changes)
  mesh = parallel.make_mesh(config.mesh.shape)
  model, processor = restore.load_with_processor(config, config.ppo.init, mesh)
  model_config = model.config
  cfg = ppo.PPOConfig.from_config(config.ppo)
  built = steps_lib.rl(config, mesh, model_config)
  grouped = cfg.advantage in advantages_lib.GROUP
  net = (learner.Policy(model) if grouped else
         learner.actor_critic(model, tuple(config.ppo.value_hidden), seed=config.seed))
  _, state = state_lib.create(net, built.tx, seed=config.seed, freeze=cfg.freeze)
  del model, net
  state = jax.device_put(state, built.shardings)
  run = Trainer(config, built, processor, cfg, mesh, mllama.param_count(model_config),
                ref_params=jax.tree.map(jnp.copy, state.params) if keeps_reference(config)
                else None)

  env, env_params = envs.get(config.task), envs.params_from_config(config)
  runner = None if grouped else batch_lib.LockstepEpisodes(
      env, env_params, config.ppo.num_envs,
      batch_lib.EpisodeStream(config.seed, stream=jax.process_index()))
  carried = RolloutState(runner)
  total = config.ppo.num_updates
  skeleton = run_lib.Run(config, workdir, model_config, state, carried, total, changes=changes,
                         totals=("train/tokens_trained", "train/tokens_buffer", "train/flops"),
                         desc=desc, job=job)
  state, totals = skeleton.state, skeleton.totals
  judge = None
  if grouped and config.grpo.reward == "self_judge":
    judge = judge_lib.Judge(run.policy(state, params=run.ref_params),
                            max_new_tokens=config.grpo.judge_max_new_tokens)
  update = built["ppo_update"]
  run_key = jax.random.wrap_key_data(jax.device_get(state.rng))  # the state is donated

  budget = config.ppo.flops_budget
  for step in range(skeleton.start, total):
    if budget and totals["train/flops"] >= budget:
      break  # a resumed run that had spent its budget
    started, timings = time.perf_counter(), rollout.Timings()
    key = jax.random.fold_in(run_key, step)
    batch, record, forward = _iteration(run, state, carried, env, env_params, judge, step, key,
                                        timings)
    sequence_tokens = float(parallel.process_allgather(
        (batch.attention_mask * batch.valid[:, None]).sum()).sum())
    with timings.phase("update"):
      state, update_metrics = update(state, run.to_device(batch), jax.random.fold_in(key, 1))
      update_metrics = jax.device_get(update_metrics)
    totals["train/tokens_trained"] += sequence_tokens * cfg.ppo_epochs
    totals["train/tokens_buffer"] += record.pop("rollout/tokens") + forward
    totals["train/flops"] = (
        metrics_lib.training_flops(run.num_params, totals["train/tokens_trained"])
        + metrics_lib.inference_flops(run.num_params, totals["train/tokens_buffer"]))
    record.update({f"ppo/{k}": float(v) for k, v in update_metrics.items()})
    record.update(totals)
    record["train/lr"] = float(ppo.learning_rate(cfg)(int(state.step) - 1))
    done = step + 1
    last = done == total or bool(budget and totals["train/flops"] >= budget)
    every = config.ppo.eval_every
    if every and (done % every == 0 or last):
      with timings.phase("eval"):
        results = eval_lib.evaluate(run.policy(state, evaluation=True), config,
                                    log_dir=os.path.join(workdir, "eval", str(done)),
                                    key=jax.random.fold_in(key, 2))
      record.update(eval_lib.flat_metrics(results))
    record.update({f"time/{k}": v for k, v in timings.items()})
    record["time/total"] = time.perf_counter() - started
    skeleton.log(done, record)
    skeleton.bar.set_postfix(reward=f"{record['rollout/reward']:.3f}")
    skeleton.save(done, state, carried, final=last)
    skeleton.bar.update(1)
    if last:
      break
  skeleton.finish()
  return state
