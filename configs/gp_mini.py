"""The miniature of the study: "SFT memorizes, RL generalizes" on GP-L, on a laptop's CPU.

    jaxrl-gen experiment --config=configs/gp_mini.py --workdir=runs/gp_mini     # the main job
    jaxrl-gen experiment --config=configs/gp_mini.py --config.seed=1 --workdir=runs/gp_mini_1

    --config=configs/gp_mini.py:ARG   ARG = comma list of a mode (default: rl; sft, grpo, eval
                                      as configs/gp.py) and a toy preset (default: tiny-text)

What the paper's 11B init model brings and a model trained from scratch lacks is the skill the
rule-OOD benchmark tests: reading the stated rule ("J, Q, K count as 11, 12, 13"). The
miniature gives the tiny model that skill first, then runs the paper's protocol on top:

  1. pre-training (`experiment.pretrain_steps`): expert answers under rules drawn from a family
     of stated J/Q/K values and targets (`data.rules='family'`,
     `jaxrl_gen.envs.general_points.rules`), which never contains the rule-OOD benchmark's
     J/Q/K = 11/12/13;
  2. the SFT warm-up on the ID rule (J/Q/K = 10, target 24): the paper's init checkpoint;
  3. from it, PPO on one graded attempt per hand (`env.verify_iter` 1: a 1M model never
     learned to read the verifier's feedback; the paper trains with 5) and SFT on the same ID
     data, at equal training FLOPs (the paper's count, pre-training excluded);
  4. evaluations along both branches on ID and rule OOD with the paper's 5 attempts of
     sequential revision (`eval.verify_iter`), each over `eval.seeds` evaluation seeds, with
     the memorization probes (`eval.probes`): the share of rule-OOD answers that apply the
     training rule, exact matches of SFT training targets, the NLL gap between SFT training
     answers and held-out expert answers.

The model is `tiny-text` (1M parameters) and the prompt the compact template
(`env.prompt='compact'`: "J=10 Q=10 K=10. Target 24. Cards: A, 3, K, 6.", answered
{"number": [...], "formula": "..."}), so the whole job takes about 10 minutes on 2 CPU cores
(`python benchmarks/mini_study.py --runs=5`: median 600 s, docs/mini_bench/gp_mini/timings.json).
Every other key is configs/gp.py's, overridable as there (e.g.
`--config.experiment.branches=rl,sft,grpo,grpo_judge`).
"""

import importlib.util
import os

import ml_collections

from jaxrl_gen import config_lib

# configs/gp.py, loaded by path: config files are read from anywhere, not imported as a package.
_SPEC = importlib.util.spec_from_file_location(
    "jaxrl_gen_configs_gp", os.path.join(os.path.dirname(os.path.abspath(__file__)), "gp.py"))
gp_config = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gp_config)

MODES = ("rl", "sft", "grpo", "eval", "play")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = miniature("l", arg, "tiny-text", "configs/gp_mini.py")
  config.lock()
  return config


def miniature(variant: str, arg: str | None, default_preset: str, name: str
              ) -> ml_collections.ConfigDict:
  """The miniature's recipe on `variant` ('l' or 'vl'; configs/gp_vl_mini.py builds on it),
  unlocked for the caller's changes."""
  words = [w.strip() for w in (arg or "").split(",") if w.strip()]
  mode = next((w for w in words if w in MODES), "rl")
  preset = next((w for w in words if w in config_lib.TOY_PRESETS), default_preset)
  unknown = [w for w in words if w not in MODES and w not in config_lib.TOY_PRESETS]
  if unknown:
    raise config_lib.ConfigError(
        f"{name}: unknown word {unknown[0]!r}; modes: {', '.join(MODES)}; "
        f"presets: {', '.join(config_lib.TOY_PRESETS)}")
  config = gp_config.get_config(f"{variant},{mode},{preset}")
  config.unlock()
  config.env.prompt = "compact"
  config.text.chat_template = "plain"
  # RL trains on one graded attempt per hand (a 1M model never learned to read the
  # verifier's feedback; the verification ablation varies this); evaluation keeps the
  # paper's 5 attempts.
  config.env.verify_iter = 1
  config.env.forced_fail_step = False

  config.data.revisions = 0  # the paper's single-turn expert pairs
  # The solver's first formula of a hand: one answer per multiset of numbers, which a 1M
  # model learns in minutes (a uniform pick among a hand's formulas it does not).
  config.data.formula = "first"
  config.data.train_size = 4096
  config.data.eval_size = 256
  config.data.max_length = 96  # compact examples are under 90 tokens: one 96-token bucket
  config.sft.batch_size = 32
  config.sft.eval_every = 0
  config.optim.lr = 3e-4  # the warm-up's and the SFT branch's (the SFT recipe)
  config.checkpoint.every = 50

  config.sampling.max_new_tokens = 40  # compact expert answers are at most 32 tokens
  # Revision turns grow prompts by about 60 tokens: buckets that step by 64 pad less.
  config.sampling.prompt_buckets = (64, 128, 192, 256, 320, 384, 448, 512, 1024)

  config.eval.episodes = 64  # per evaluation seed
  config.eval.seeds = 3
  config.eval.batch_size = 64
  config.eval.probes = 64

  # PPO (the RL recipe): 64 single-attempt hands an update, the reference's rollout
  # temperature 0.2 (T 1.0 rollouts lowered ID success here), a constant small lr.
  config.ppo.num_envs = 64
  config.ppo.num_steps = 64
  config.ppo.minibatches = 2
  config.ppo.grad_accum = 1
  config.ppo.rollout_temperature = None
  config.ppo.lr = 2e-5
  config.ppo.end_lr = 2e-5

  config.experiment.pretrain_steps = 600
  config.experiment.pretrain_lr = 1e-3
  config.experiment.init_steps = 30
  config.experiment.rl_updates = 20
  config.experiment.evals = 2
  return config
