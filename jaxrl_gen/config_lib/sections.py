"""The config sections the task configs share, one builder each (`model_config`, `mesh_config`,
`text_config`, `train_config`, `eval_repeats`, `ppo_config`, `grpo_config`,
`experiment_config`, `sampling_config`), and the pod recipes of the real presets (`POD_*`).

A builder's docstring is the key table of its section: `keys.describe` reads the tables of
this module's functions (`jaxrl-gen config`).
"""

from __future__ import annotations

import ml_collections

from jaxrl_gen.config_lib.grammar import TOY_PRESETS
from jaxrl_gen.models import config as model_config_lib  # JAX-free
from jaxrl_gen.sampling import inputs as sampling_inputs  # JAX-free

# The pod recipes of the real presets, their defaults (measured by `jaxrl-gen aot`, the fit
# table in docs/pods.md): FSDP over every chip (mesh (1, -1, 1)), every scanned block
# rematerialised, and SFT gradient accumulation `sft.accum` for batches of 128 x 1024.
POD_MESH = (1, -1, 1)
POD_REMAT = "full"
POD_SFT_ACCUM = {"llama-3.2-1b": 1, "llama-3.2-3b": 2, "llama-3.1-8b": 4,
                 "llama-3.2-11b-vision": 4, "llama-3.2-90b-vision": 4}
# PPO micro-batches of num_steps x hosts / (minibatches x grad_accum) rows: 32 gives one row a
# chip on v4 / v5p / v5e slices (4 chips a host), so a micro-batch spreads over the data
# shards; the reference's 128 gives 2-row micro-batches on a 2-host slice, gathered whole onto
# every chip (11B on v4:2x2x4: 47.5 GiB a chip with 128, 24.6 with 32). The same update up to
# float order, except that the ratio rule looks at a micro-batch of 8+ rows at once.
POD_PPO_GRAD_ACCUM = 32


def model_config(preset: str) -> ml_collections.ConfigDict:
  """The `config.model` section every task config shares.

      model.preset       the shape (`jaxrl_gen.models.presets`).
      model.dtype        compute dtype: 'auto' (bfloat16 on TPU/GPU, float32 on CPU) |
                         'float32' | 'bfloat16' | 'float16'.
      model.param_dtype  parameter (master weight) dtype: 'float32' (default) | 'bfloat16'.
      model.remat        rematerialisation of each scanned block: 'none' (toy presets) |
                         'full' (real presets: save only each block's input) | 'dots' |
                         'dots_no_batch' | 'save_qkv' | 'save_attn_mlp'.
      model.scan_layers  True: lax.scan over repeated layers (fast compiles); False: unrolled.
  """
  return ml_collections.ConfigDict({
      "preset": preset,
      "dtype": "auto",
      "param_dtype": "float32",
      "remat": "none" if preset in TOY_PRESETS else POD_REMAT,
      "scan_layers": True,
  })


def mesh_config(preset: str = "tiny") -> ml_collections.ConfigDict:
  """The `config.mesh` section: the device mesh and the logical-axis sharding rules.

      mesh.shape  sizes of the ('data', 'fsdp', 'tensor') axes; one -1 takes the remaining
                  devices. (-1, 1, 1): pure data parallelism (toy presets); (1, -1, 1): FSDP,
                  every parameter and optimizer moment split over all chips (real presets:
                  replicated, an 11B model's training state alone is 176 GB per chip).
      mesh.rules  (logical axis, mesh axes) pairs: parameters and activations name their
                  dimensions ('embed', 'heads', 'kv_heads', 'mlp', 'vocab', 'batch', ...);
                  a name maps to None (replicated), a mesh axis, or a tuple of mesh axes.
  """
  return ml_collections.ConfigDict({
      "shape": (-1, 1, 1) if preset in TOY_PRESETS else POD_MESH,
      "rules": model_config_lib.DEFAULT_RULES,
  })


def text_config() -> ml_collections.ConfigDict:
  """The `config.text` section (`jaxrl_gen.text`), in every mode: how prompts are encoded.

      text.tokenizer      '': the model checkpoint's own tokenizer (sft.init's, or the
                          `jaxrl-gen eval --checkpoint`'s; for a run directory, the tokenizer
                          that run trained with), else the embedded one (2048 ids: the toy
                          presets); or a local checkpoint directory whose tokenizer (and chat
                          template, and image processor config) to use.
      text.date_string    '26 Jul 2024': the chat template's "Today Date" (fixed, so prompts
                          do not change with the calendar).
      text.chat_template  '': the tokenizer's own chat template | 'plain': Llama-3's turn
                          format without the system block of dates the Llama-3.2-Vision
                          template adds to text-only chats (27 fewer tokens a prompt; for
                          models trained from scratch, configs/gp_mini.py).
  """
  return ml_collections.ConfigDict({"tokenizer": "", "date_string": "26 Jul 2024",
                                    "chat_template": ""})


def follows_seed() -> ml_collections.FieldReference:
  """The default of a section's `seed` that follows config.seed (None until set; an int
  override replaces it): read through `seed_of`."""
  return ml_collections.FieldReference(None, field_type=int)


def seed_of(config, section: str) -> int:
  """`config.<section>.seed` (data, eval), or config.seed where it is None (follows)."""
  value = config[section].seed
  value = config.seed if value is None else value
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ValueError(f"config.{section}.seed={value!r}: must be an integer >= 0, or None"
                     " to follow config.seed")
  return value


def train_config(config: ml_collections.ConfigDict, *, lr: float, steps: int,
                 train_size: int = 51200, extra_data: dict | None = None) -> None:
  """Adds the sections of a training run (`sft` mode; the RL trainer shares optim/
  checkpoint/log) to a task config. `lr` and `steps` are the task variant's reference values,
  used for real presets; the toy presets (tiny, small), trained from random init on a CPU, get
  lr 1e-3, 300 steps, batch 32 and 9600 training episodes (one epoch) instead.

  Data (`jaxrl_gen.data`):
      data.source         'env': expert pairs generated from config.env into a TFDS data set |
                          'llava': LLaVA-style JSON (the reference's released SFT data).
      data.dir            '': where TFDS data are prepared ('' = <workdir>/data).
      data.train_size     training episodes generated (GP: one pair each, 51200 = the
                          reference's 400 steps x 128; V-IRL: one pair per rail point of a
                          route, 1000 routes).
      data.eval_size      256: held-out episodes (the 'test' split, for the eval loss).
      data.seed           None: seed of the generated episodes and of the shuffle; None
                          follows config.seed (so training seeds vary the data too).
      data.llava_json     '': the LLaVA JSON (or JSON lines) file for source='llava'.
      data.llava_eval_json  '': optional held-out LLaVA file.
      data.image_root     '': folder of the LLaVA image paths ('' = the JSON file's folder).
      data.max_length     1024: tokens per example; longer ones are cut.
      data.eot_newline    False: True also supervises a "\\n" after each <|eot_id|>, as the
                          reference SFT code does.
      data.threads        2: grain reader threads encoding ahead of the step.
      data.workers        0: grain worker processes (0: none, threads only).
  SFT (`jaxrl_gen.train`):
      sft.steps           optimizer steps of the run (the schedule's length).
      sft.batch_size      128: global batch (examples per optimizer step, all processes).
      sft.accum           gradient accumulation: micro-batches per step (1 for toy presets;
                          real presets: POD_SFT_ACCUM, 4 for 11B: what fits 128 x 1024 rows
                          with an image on a v5p-8).
      sft.loss_chunk      512: the LM head and loss run over this many positions at a time
                          (rematerialised), so a 128k-vocabulary step never holds the whole
                          sequence's fp32 logits; 0: all positions at once. Same loss.
      sft.init            '': random init (seed config.seed) | a Hugging Face checkpoint
                          directory | a `jaxrl-gen convert` orbax directory | a run directory
                          (its latest checkpoint's parameters; `jaxrl_gen.train.restore`).
      sft.freeze          (): regexes (re.search) of dotted parameter paths not trained, e.g.
                          "('vision_model',)" or "('vision_model', 'multi_modal_projector')"
                          (the paper's ablation); as ppo.freeze.
      sft.eval_every      50: steps between evaluations (0: never).
      sft.eval_batches    4: batches of the test split per held-out loss evaluation (0: all
                          of it).
      sft.eval_episodes   0 (off): also sample answers for (up to) this many episodes of
                          each config.eval benchmark (config.sampling's generation) at each
                          evaluation and log eval/id/success, parse_rate, ...
                          (`jaxrl_gen.eval`).
  Optimizer (`jaxrl_gen.train.optim`; reference SFT values, `decisions.md`):
      optim.lr            peak learning rate.
      optim.b1, optim.b2  0.9, 0.98.
      optim.eps           1e-7.
      optim.weight_decay  0.0 (when set, not on norms, biases and gates).
      optim.schedule      'cosine' | 'constant' (both after the warm-up).
      optim.warmup_ratio  0.03: linear warm-up over the first 3% of the steps.
      optim.end_lr_ratio  0.0: the cosine ends at lr * this.
      optim.max_grad_norm 1.0 (transformers' Trainer default); None: no clipping.
      optim.moment_dtype  'float32' | 'bfloat16': Adam's two moments (bf16: half the
                          optimizer state on a pod; the update runs in fp32).
  Checkpoints (`jaxrl_gen.train.checkpoint`, under <workdir>/checkpoints; a run resumes from
  the latest one automatically):
      checkpoint.every    20: steps between checkpoints (the reference's save interval).
      checkpoint.keep     3: checkpoints kept (the newest).
      checkpoint.async_save  True: write in the background.
  Logging (`jaxrl_gen.metrics`, <workdir>/metrics.jsonl and <workdir>/tensorboard):
      log.every           10: steps between metric records (means over the interval).
      log.tensorboard     True.
      log.progress        True: a progress bar.
  """
  toy = config.model.preset in TOY_PRESETS
  config.data = ml_collections.ConfigDict({
      "source": "env", "dir": "", "train_size": 9600 if toy else train_size, "eval_size": 256,
      "seed": follows_seed(), "llava_json": "", "llava_eval_json": "", "image_root": "",
      "max_length": 1024, "eot_newline": False, "threads": 2, "workers": 0, **(extra_data or {})})
  config.sft = ml_collections.ConfigDict({
      "steps": 300 if toy else steps, "batch_size": 32 if toy else 128,
      "accum": POD_SFT_ACCUM.get(config.model.preset, 1),
      "loss_chunk": 512, "init": "",
      "freeze": (), "eval_every": 50, "eval_batches": 4, "eval_episodes": 0})
  config.optim = ml_collections.ConfigDict({
      "lr": 1e-3 if toy else lr, "b1": 0.9, "b2": 0.98, "eps": 1e-7, "weight_decay": 0.0,
      "schedule": "cosine", "warmup_ratio": 0.03, "end_lr_ratio": 0.0,
      "max_grad_norm": ml_collections.FieldReference(1.0, field_type=float),
      "moment_dtype": "float32"})
  config.checkpoint = ml_collections.ConfigDict({"every": 20, "keep": 3, "async_save": True})
  config.log = ml_collections.ConfigDict({"every": 10, "tensorboard": True, "progress": True})


def eval_repeats(config: ml_collections.ConfigDict) -> None:
  """Adds the evaluation keys every task shares to `config.eval` (`jaxrl_gen.eval`):

      eval.seeds          1: evaluation seeds; k > 1 runs each benchmark again from seeds
                          eval.seed + 1 .. + k-1 (other hands or routes, other sampling keys,
                          logs <benchmark>.seed<j>.jsonl) and scores the pooled episodes, with
                          the headline's spread across seeds as <metric>_seed_std.
      eval.probes         0: off; n > 0 also runs the memorization probes at each evaluation
                          on the first n SFT training pairs of config.data and n held-out ones
                          (`jaxrl_gen.probes`: exact matches of training targets, the NLL gap).
  """
  config.eval.seeds = 1
  config.eval.probes = 0


def ppo_config(*, num_updates: int, lr: float, toy: bool = False, mode: str = "rl"
               ) -> ml_collections.ConfigDict:
  """The `config.ppo` section: multi-turn PPO (`reference.md` §4, `decisions.md` rows 5-8;
  `jaxrl_gen.train.ppo`, `jaxrl_gen.train.rl`), the reference's launched values as defaults.

      ppo.init              '': the policy to start from: random init (config.seed) | an SFT
                            workdir (its latest checkpoint) | a Hugging Face checkpoint
                            directory | a `jaxrl-gen convert` orbax directory.
      ppo.num_envs          1 (the reference: one env per process): episodes per process run
                            in lock-step, one batched generation per turn; num_steps /
                            num_envs turns per update.
      ppo.eval_every        5: updates between evaluations (config.eval; 0: never; the last
                            update always evaluates when > 0).
      ppo.rescore_chunk     16: rows per forward of the rollout's re-scoring pass.
      ppo.length_multiple   64: the buffer's prompt and output lengths are padded up to
                            multiples of this (they only grow within a run: one compile of
                            the update per length reached).
      ppo.num_updates       PPO updates in the run (rollout + learn each): the task's value.
      ppo.flops_budget      0.0 (off): the run ends after the update whose training FLOPs
                            (train/flops, the paper's count) reach this, evaluated and
                            checkpointed there: runs of different shapes at equal compute
                            (the verification ablation, docs/generalization.md).
      ppo.num_steps         256: transitions (generations) per process per update.
      ppo.gamma             0.9: discount per turn.
      ppo.gae_lambda        0.95: GAE lambda.
      ppo.bootstrap_truncated  False: an episode ends on terminated or truncated and nothing
                            bootstraps across it; True: the reference (only `terminated` cuts
                            bootstrapping, so a truncated episode bootstraps from the next one).
      ppo.clip              0.1: the policy ratio clip.
      ppo.value_clip        0.1: the value clip, 0.5 * max((V-R)^2, (V_old + clip(V-V_old) - R)^2).
      ppo.value_coef        0.5: the value loss's weight in the total.
      ppo.entropy_coef      0.0: entropy bonus (the reference configures 0.01 but never computes
                            it); > 0 needs a scorer that returns token entropies.
      ppo.kl_coef           0.0: weight of the k3 KL to a frozen reference model (not in the paper;
                            mode grpo: 0.04, DeepSeekMath's), its parameters sharded like the
                            policy's, no optimizer state.
      ppo.kl_in_reward      False: the KL is a loss term; True: kl_coef x the episode's summed
                            log-ratio to the reference is subtracted from its reward instead.
      ppo.advantage         'gae' (PPO, with the critic) | 'grpo' | 'drgrpo' | 'rloo' (the
                            GRPO family, over each group's episode rewards;
                            `jaxrl_gen.train.advantages`). Mode grpo sets 'grpo'.
      ppo.loss              'turn_ppo': the reference's PPO, one ratio per generation
                            (thought_coef-weighted sequence log-prob) | 'token_ppo': a clipped
                            ratio per output token, with the critic | 'grpo_clip': the same
                            without a critic (mode grpo; `jaxrl_gen.train.token_loss`).
      ppo.clip_high         None: the token losses' upper clip, 1 + clip_high (DAPO's
                            asymmetric clip, e.g. 0.28); None: ppo.clip.
      ppo.loss_agg          'token_mean' | 'seq_mean_token_mean' (GRPO) |
                            'seq_mean_token_sum_norm' (Dr.GRPO): how the token losses average.
      ppo.rollout_temperature  None: the rollouts' sampling temperature (their log-probs and
                            the PPO ratios are taken at it); None: config.sampling.temperature,
                            as the reference (0.2). Evaluation always samples as
                            config.sampling says.
      ppo.thought_coef      0.5: weight of the thought tokens in the sequence log-prob.
      ppo.action_span       'field': the action tokens are the answer field (`"formula": ...`) found
                            on the decoded text, every output token scored | 'legacy': the
                            reference's token-pattern rule (`jaxrl_gen.train.action_span`).
      ppo.ratio_rule        True: if any ratio in a microbatch exceeds 10, only the clipped
                            surrogate is used (the reference); False: always the PPO minimum.
      ppo.ppo_epochs        4: passes over the buffer per update.
      ppo.minibatches       2: optimizer steps per pass (the buffer is shuffled and split).
      ppo.grad_accum        microbatches (forward/backward passes) averaged per optimizer
                            step; num_steps must divide into minibatches x grad_accum. The
                            reference's 128 (256 / 2 / 128: one sample per pass) | real
                            presets: 32, one row a chip on a pod slice (POD_PPO_GRAD_ACCUM).
      ppo.lr                Adam's initial learning rate: the task's value.
      ppo.end_lr            1e-9: cosine decay to this over the run's optimizer steps
                            (num_updates x ppo_epochs x minibatches).
      ppo.value_lr          None: the value head's own peak learning rate (same cosine shape;
                            e.g. a critic learning from scratch under a small policy lr);
                            None: ppo.lr for all parameters, as the reference.
      ppo.adam_eps          1e-7: Adam epsilon (no weight decay).
      ppo.max_grad_norm     None: global-norm gradient clipping off; a float clips.
      ppo.value_hidden      (1024, 512): hidden sizes of the value head MLP (ReLU) on the last
                            prompt token's hidden state.
      ppo.freeze            (): regexes (re.search) of parameter paths ('a.b.kernel') the
                            optimizer leaves unchanged, e.g. ('^vision_model\\.',) freezes the
                            vision tower.

  The toy presets (tiny, small; a CPU, from an SFT warm-up) change: lr 2e-5 held constant
  (end_lr 2e-5), rollout_temperature 1.0, num_steps 64 from num_envs 64, grad_accum 2
  (micro-batches of 16), value_hidden (256, 128): the settings that raised the tiny GP-L
  model's success (docs/rl.md, with env.verify_iter=1 in training).

  Mode grpo (`grpo_config`) changes: advantage 'grpo', loss 'grpo_clip', clip 0.2, kl_coef
  0.04, ppo_epochs 1 (one policy update per exploration stage, as DeepSeekMath), and
  num_envs = num_steps = grpo.groups x grpo.group_size (the rows of single-turn episodes; the
  update pads longer rollouts to a multiple of its micro-batches).
  """
  config = ml_collections.ConfigDict()
  config.init = ""
  config.num_updates = num_updates
  config.flops_budget = 0.0
  config.num_steps = 64 if toy else 256
  config.num_envs = 64 if toy else 1
  config.eval_every = 5
  config.rescore_chunk = 16
  config.length_multiple = 64
  config.gamma = 0.9
  config.gae_lambda = 0.95
  config.bootstrap_truncated = False
  config.clip = 0.1
  config.value_clip = 0.1
  config.value_coef = 0.5
  config.entropy_coef = 0.0
  config.kl_coef = 0.0
  config.kl_in_reward = False
  config.advantage = "gae"
  config.loss = "turn_ppo"
  config.clip_high = ml_collections.config_dict.placeholder(float)
  config.loss_agg = "token_mean"
  config.rollout_temperature = 1.0 if toy else ml_collections.config_dict.placeholder(float)
  config.thought_coef = 0.5
  config.action_span = "field"
  config.ratio_rule = True
  config.ppo_epochs = 4
  config.minibatches = 2
  config.grad_accum = 2 if toy else POD_PPO_GRAD_ACCUM
  config.lr = 2e-5 if toy else lr
  config.end_lr = 2e-5 if toy else 1e-9
  config.value_lr = ml_collections.config_dict.placeholder(float)
  config.adam_eps = 1e-7
  config.max_grad_norm = ml_collections.config_dict.placeholder(float)
  config.value_hidden = (256, 128) if toy else (1024, 512)
  config.freeze = ()
  if mode == "grpo":
    config.advantage, config.loss = "grpo", "grpo_clip"
    config.clip, config.kl_coef, config.ppo_epochs = 0.2, 0.04, 1
  return config


def grpo_config(ppo: ml_collections.ConfigDict, *, toy: bool = False, mode: str = "grpo"
                ) -> ml_collections.ConfigDict:
  """The `config.grpo` section (mode grpo; `jaxrl_gen.train.rl`, `spec/algorithms.md`):
  `grpo.groups` prompts a process an update, each answered by `grpo.group_size` episodes of
  the same first prompt (sequential revision: each member's return scores it); the learner's
  other settings are `config.ppo`'s. In mode grpo, `ppo.num_envs` and `ppo.num_steps` follow
  groups x group_size.

      grpo.groups           prompts (groups) per process per update: 16 (toy) | 32.
      grpo.group_size       samples per prompt n: 4 (toy) | 8.
      grpo.reward           'verifier': the env's reward (the episode's return) | 'majority':
                            agreement with the group's majority answer (test-time RL) |
                            'self_judge': the self-judged reward of arXiv 2603.21289 (the
                            consistency prior, a frozen judge's bounded modulation, the format
                            term; `jaxrl_gen.train.rewards`). The last two read no verifier
                            reward and need single-attempt episodes (GP: env.verification=False).
      grpo.beta             1.0: the self-judged reward's group-distribution temperature.
      grpo.judge_advantage  'centred': ppo.advantage over beta R (the official code: the
                            log-softmax's constant cancels under group-mean centring) |
                            'log_softmax': a_i = beta R_i - logsumexp(beta R) used as is.
      grpo.judge_max_new_tokens  the judge's generation budget: 64 (toy) | 1024.
  """
  config = ml_collections.ConfigDict({
      "groups": 16 if toy else 32, "group_size": 4 if toy else 8, "reward": "verifier",
      "beta": 1.0, "judge_advantage": "centred", "judge_max_new_tokens": 64 if toy else 1024})
  if mode == "grpo":
    rows = config.get_ref("groups") * config.get_ref("group_size")
    ppo.num_envs = rows
    ppo.num_steps = rows
  return config


def experiment_config(*, init_steps: int, rl_updates: int, pretrain_steps: int = 0
                      ) -> ml_collections.ConfigDict:
  """The `config.experiment` section (`jaxrl-gen experiment`, `jaxrl_gen.experiment`).

      experiment.pretrain_steps  0: none (a real checkpoint was pre-trained); k > 0: k SFT
                              steps from random init before the warm-up on expert answers
                              under rules drawn from a family (`data.rules='family'`,
                              `envs.general_points.rules`: stated J/Q/K values and targets,
                              never the rule-OOD benchmark's), one pass over k x sft.batch_size
                              examples, so the model can read a stated rule. Not counted in
                              the branches' FLOPs, as the paper does not count pre-training.
      experiment.pretrain_lr  0.0: optim.lr; else pre-training's peak learning rate.
      experiment.init_lr      0.0: optim.lr; else the warm-up's peak learning rate (the SFT
                              branch always trains at optim.lr, e.g. the RL branch's ppo.lr,
                              as the paper's branches share theirs).
      experiment.init_steps   SFT warm-up steps (the task's SFT length; toy presets: 1200 on
                              the single-turn expert data, what a tiny model needs from random
                              init to solve some hands).
      experiment.rl_updates   PPO updates of the RL branch (ppo.num_updates of that run); the
                              SFT branch gets as many steps as the RL branch's FLOPs buy.
      experiment.evals        4: evaluations along each branch (config.eval), besides the
                              warm-up's.
      experiment.branches     'rl,sft': the branches from the warm-up, a comma list of rl
                              (PPO; the FLOPs budget), sft, grpo (GRPO on the verifier's
                              reward) and grpo_judge (GRPO on the self-judged reward, no
                              verifier reward), each at the rl branch's training FLOPs.
  """
  return ml_collections.ConfigDict({"pretrain_steps": pretrain_steps, "pretrain_lr": 0.0,
                                    "init_steps": init_steps, "init_lr": 0.0,
                                    "rl_updates": rl_updates, "evals": 4,
                                    "branches": "rl,sft"})


def sampling_config(toy: bool = False) -> ml_collections.ConfigDict:
  """The `config.sampling` section: rollout and evaluation generation (`sampling.generate`).

      sampling.temperature     0.2, the reference's rollouts (`reference.md` 4.2); 0 = greedy.
                               Log-probs are of softmax(logits / temperature) before top-k/p.
      sampling.top_p           1.0 (off). The reference leaves top-p to the checkpoint's
                               generation_config.json, probably the Llama-3 default 0.9
                               [inferred, not verified]: set 0.9 to follow that guess.
      sampling.top_k           0 (off).
      sampling.max_new_tokens  512 (toy presets: 128, several times their answers' length): the
                               generation budget per turn.
      sampling.prompt_buckets  prompt lengths are padded up to one of these (past the largest:
                               a multiple of it); each bucket is one compiled program.
      sampling.batch_buckets   row counts likewise (then up to a multiple of the batch shards).
      sampling.cache_dtype     'auto' (the model's compute dtype) | 'float32' | 'bfloat16':
                               the self-attention KV cache.
      sampling.decode_layers   'auto' | 'scan' | 'unrolled': how decode steps run the layers
                               ('unrolled' keeps a per-call copy of the decoder weights and
                               reads them in place; 'auto' = 'unrolled' on CPU only).
      sampling.max_rows        0: an RL rollout answers all of a turn's conversations in one
                               generate call; n > 0: at most n a process per call, in
                               consecutive calls (the sampler's KV cache and logits grow with
                               the rows decoded at once: GRPO's 256 rows a host need 189 GiB a
                               chip for 11B on a v5p:2x2x2, 32 fit; docs/pods.md). Evaluations
                               decode eval.batch_size rows a call.
  """
  return ml_collections.ConfigDict({
      "temperature": 0.2,
      "top_p": 1.0,
      "top_k": 0,
      "max_new_tokens": 128 if toy else 512,
      "prompt_buckets": sampling_inputs.PROMPT_BUCKETS,
      "batch_buckets": sampling_inputs.BATCH_BUCKETS,
      "cache_dtype": "auto",
      "decode_layers": "auto",
      "max_rows": 0,
  })
