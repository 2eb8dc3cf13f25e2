"""GeneralPoints (the generalized 24 game): GP-L (text) and GP-VL (card image).

    --config=configs/gp.py:ARG      ARG = comma list of: variant, mode, model preset
      variant: l (default) | vl
      mode:    play (default; the interactive demo) | sft (supervised fine-tuning on expert data)
               | rl (PPO with verifier feedback) | grpo (the GRPO family: `config.grpo`,
               `jaxrl_gen.config_lib.grpo_config`; docs/grpo.md)
               | eval (as play: the sections `jaxrl-gen eval` reads; eval accepts a config
               of any mode)
      preset:  tiny (default) | small | llama-3.2-1b | ... (see jaxrl_gen.config_lib.PRESETS)

Examples:
    jaxrl-gen play --config=configs/gp.py:vl --workdir=/tmp/gp
    jaxrl-gen train --config=configs/gp.py:l,sft,tiny --workdir=runs/gp_l_sft
    jaxrl-gen eval --config=configs/gp.py:l,tiny --checkpoint=runs/gp_l_sft
    jaxrl-gen play --config=configs/gp.py:l --config.env.ood=True --config.env.face_cards_as_10=False

Model and mesh: `config.model.*` (preset, dtype, param_dtype, remat, scan_layers) and
`config.mesh.*` (shape, rules) are documented in `jaxrl_gen.config_lib.model_config` and
`mesh_config`, e.g. `--config.model.remat=full --config.mesh.shape='(1,-1,1)'`.
Rollout and evaluation sampling: `config.sampling.*` (temperature 0.2, top_p, top_k,
max_new_tokens 512, prompt_buckets, batch_buckets, cache_dtype, decode_layers) are documented
in `jaxrl_gen.config_lib.sampling_config`, e.g. `--config.sampling.top_p=0.9`.

Text (every mode): `config.text.*` (tokenizer, date_string) are documented in
`jaxrl_gen.config_lib.text_config`.
Training (mode sft): `config.data`, `config.sft`, `config.optim`,
`config.checkpoint` and `config.log` are documented in `jaxrl_gen.config_lib.train_config`.
GeneralPoints adds
    data.formula          'random': each expert answer is one of the hand's solver formulas,
                          drawn uniformly | 'first': always the first one.
    data.revisions        0 (real presets): the reference's single-turn pairs; k > 0 puts 0..k
                          failed attempts (a wrong operator, card or character) and the
                          verifier's feedback before the expert answer, as in sequential
                          revision (only the final answer is supervised). The toy presets use
                          4 (= verify_iter - 1): a model from random init has never seen a
                          revision turn, and answers them with unparseable text otherwise.
    data.rules            'env': every example under config.env's rule | 'family': each hand's
                          J/Q/K values and target drawn from the pre-training family
                          (`jaxrl_gen.envs.general_points.rules`; never the rule-OOD
                          benchmark's 11/12/13), the rule stated in its prompt.
Reference values (`reference.md` §5): lr 1e-6 (GP-L) / 5e-7 (GP-VL), 400 steps of global batch
128; the toy presets (tiny, small) use lr 1e-3, 300 steps, batch 32.

Environment switches (`reference.md` §2, `decisions.md` rows 1-5), reference values as
defaults:
    env.target            24: the number the formula must reach.
    env.face_cards_as_10  True: J/Q/K count 10 (the ID rule); False: 11/12/13 (rule OOD).
    env.face_values       (): the rule face_cards_as_10 names | (j, q, k): J, Q and K count these
                          values (the prompt states them; the benchmarks set their own rule).
    env.prompt            'reference': the reference's prompt and answer layout, byte for byte
                          (what real checkpoints were trained on) | 'compact': the same rule,
                          target and cards in a one-line prompt and a one-line JSON answer
                          ("J=10 Q=10 K=10. Target 24. Cards: A, 3, K, 6." ->
                          {"number": [...], "formula": "..."}), for models trained from
                          scratch on a CPU (configs/gp_mini.py).
    env.ood               False: True puts at least one J/Q/K in every hand (rule-OOD evaluation).
    env.color             suit colours of every card: 'mixed' (GP-L) | 'black' (GP-VL train and
                          ID) | 'red' (GP-VL visual OOD).
    env.deal              'independent' (the code: each card uniform over 13 ranks and the
                          colour's suits, repeats possible) | 'deck' (the paper's text: 4 cards
                          without replacement from the deck of the allowed suits; with ood, one
                          of them is drawn from that deck's J/Q/K first). Unsolvable hands are
                          redrawn in both.
    env.verify_iter       5: graded attempts per hand (sequential revision).
    env.verification      True: revise after a failure; False: one attempt per episode (the
                          recognition evaluations).
    env.forced_fail_step  True: after the budget, one more generation is graded -1 and the
                          episode is truncated (the reference); False: truncate on the last
                          graded attempt.
    env.reward_mode       'paper': one reward per attempt from the paper's table (+5, -1, -2,
                          -3, -1.5), first failing check decides, exact arithmetic |
                          'legacy': the reference code's additive table (incl. +1 "partial"
                          and the float-rounding 0), Python float arithmetic, and GP-VL card
                          items read with their inner spaces removed ('1 0' is 10). Both never run
                          the answer: `jaxrl_gen/envs/general_points/verifier.py` has details.
    env.language_only     True for GP-L; False for GP-VL (adds the image and the card
                          recognition check).
    env.resolution        1200: the GP-VL canvas side in pixels (64..8192).
    env.formula_label     False: True draws the paper-era "Formula:" label on the image.
    env.card_assets       '': draw card faces with Pillow; a folder of {S,H,D,C}{A,2..9,T,J,Q,K}.png
                          reproduces the reference observation pixel for pixel.

Evaluation (`reference.md` §6; `jaxrl_gen.eval`), the reference's values as defaults:
    eval.benchmarks       'all': a comma list of id, rule_ood, visual_ood (GP-VL, red suits),
                          recognition_id, recognition_rule_ood, recognition_visual_ood (GP-VL,
                          one attempt, no verification); 'all' = id,rule_ood for GP-L and all
                          six for GP-VL. Each takes the run's env settings and sets the face-card
                          rule, ood and colour of its row of the variant table (§2.10).
    eval.episodes         234: hands per benchmark.
    eval.seed             None: hand i of a benchmark is dealt from key (seed, i); None
                          follows config.seed (42, the reference's eval seed).
    eval.verify_iter      5: attempts per hand (sequential revision) outside recognition.
    eval.batch_size       8: episodes run in lock-step (one batched generation per turn);
                          results do not depend on it.
    eval.seeds, eval.probes   1, 0: repeated evaluation seeds and the memorization probes (every
                          task; `jaxrl_gen.config_lib.eval_repeats`).

RL (mode rl; `jaxrl_gen.train.rl`): `config.ppo.*` is documented in
`jaxrl_gen.config_lib.ppo_config`; GP-L and GP-VL use the reference's launched values (20
updates, lr 1e-6).
"""

import ml_collections

from jaxrl_gen import config_lib

VARIANTS = ("l", "vl")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  choice = config_lib.parse_arg(arg, variants=VARIANTS, default_variant="l")
  vision = choice.variant == "vl"
  toy = choice.preset in config_lib.TOY_PRESETS

  config = ml_collections.ConfigDict()
  config.task = "gp"
  config.variant = choice.variant
  config.mode = choice.mode
  config.seed = 42

  config.env = ml_collections.ConfigDict()
  config.env.target = 24
  config.env.face_cards_as_10 = True
  config.env.ood = False
  config.env.color = "black" if vision else "mixed"
  config.env.deal = "independent"
  config.env.verify_iter = 5
  config.env.verification = True
  config.env.forced_fail_step = True
  config.env.reward_mode = "paper"
  config.env.language_only = not vision
  config.env.resolution = 1200
  config.env.formula_label = False
  config.env.card_assets = ""
  config.env.face_values = ()
  config.env.prompt = "reference"

  config.eval = ml_collections.ConfigDict()
  config.eval.benchmarks = "all"
  config.eval.episodes = 234
  config.eval.seed = config_lib.follows_seed()
  config.eval.verify_iter = 5
  config.eval.batch_size = 8
  config_lib.eval_repeats(config)

  config.ppo = config_lib.ppo_config(num_updates=20, lr=1e-6, toy=toy,
                                      mode=choice.mode)
  config.grpo = config_lib.grpo_config(config.ppo, toy=toy, mode=choice.mode)

  config.model = config_lib.model_config(choice.preset)
  config.mesh = config_lib.mesh_config(choice.preset)
  config.sampling = config_lib.sampling_config(toy=toy)
  config.experiment = config_lib.experiment_config(
      init_steps=1200 if toy else 400, rl_updates=150 if toy else 20)
  config_lib.train_config(config, lr=5e-7 if vision else 1e-6, steps=400,
                          extra_data={"formula": "random", "revisions": 4 if toy else 0,
                                      "rules": "env"})
  config.text = config_lib.text_config()

  config.lock()
  return config
