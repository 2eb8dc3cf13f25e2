"""V-IRL navigation: V-IRL-L (text observations) and V-IRL-VL (street-view images).

    --config=configs/virl.py:ARG    ARG = comma list of: variant, mode, model preset
      variant: l (default) | vl
      mode:    play (default) | sft (supervised fine-tuning on expert routes) | rl (PPO)
               | grpo (the GRPO family, `config.grpo`; docs/grpo.md)
               | eval (as play: the sections `jaxrl-gen eval` reads; eval accepts a config
               of any mode)
      preset:  tiny (default) | small | llama-3.2-1b | ... (see jaxrl_gen.config_lib.PRESETS)

Overrides, e.g.:
    jaxrl-gen train --config=configs/virl.py:l,sft,tiny --workdir=runs/virl_l_sft
    jaxrl-gen eval --config=configs/virl.py:l,tiny --checkpoint=runs/virl_l_sft
    --config=configs/virl.py:vl --config.env.resolution=336
    --config=configs/virl.py:l --config.env.action_space=relative
    --config=configs/virl.py:l --config.env.data_dir=/data/nyc_1k_routes --config.env.route_split=all
    --config=configs/virl.py:vl --config.env.view_headings="(-135, -45, 45, 135)"

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
The expert data walk `data.train_size` routes (default 1000, the size of the reference's NYC
set) with one prompt -> answer pair per rail point. Reference values (`reference.md` §5): lr
1e-6 (V-IRL-L) / 5e-7 (V-IRL-VL), global batch 128; the V-IRL-L RL init is the 25-step
checkpoint; the toy presets (tiny, small) use lr 1e-3, 300 steps, batch 32.

Route data (`reference.md` §3.1):
    env.data_dir          '': a synthetic data set generated on first use into the cache (no
                          download); else a directory in the published layout: route_infos.json,
                          gps_pano_mapping.json (convert the published .pkl with
                          `python -m jaxrl_gen.envs.virl.mapping --trust-pickle SRC DST`) and
                          street_views/{pano_id}.jpg + .metadata.json.
    env.synthetic         which synthetic data set when data_dir is '': 'city' (one city in the
                          training style, with train / held-out route splits) | 'mini' (the
                          visual-OOD benchmark: 9 cities in 9 other styles, 2 routes each).
    env.synthetic_seed    0: the synthetic data set's seed.
    env.cache_dir         '': where synthetic data sets are written ('' =
                          $XDG_CACHE_HOME/jaxrl_gen/virl, else ~/.cache/jaxrl_gen/virl).
    env.route_split       'train': the routes episodes are drawn from: 'train' | 'heldout' (need
                          the splits.json of synthetic data) | 'all' (the published data, which
                          have no split: the paper trains on all 1000 routes).

Environment (`reference.md` §3.2-3.7, `decisions.md` rows 9-12), reference values as defaults:
    env.action_space      'absolute' (8 compass directions; training, ID and visual-OOD eval) |
                          'relative' (left / right / slightly left / slightly right: rule OOD).
    env.verify_iter       2: graded attempts per rail point (sequential revision); the budget
                          refreshes after every correct move.
    env.forced_fail_step  True: after the budget, one more generation is graded -1 and the
                          episode is truncated (the reference); False: truncate on the last
                          graded attempt.
    env.straight_line_length  5: interpolated forward points per leg (before drop-out).
    env.drop_rate         0.5: probability of dropping each interpolated point.
    env.snap_radius       20.0: metres within which a position snaps to a panorama.
    env.wrap_turns        True: relative turn labels use the angle difference wrapped to
                          (-180, 180]; False: the reference's raw difference (350 -> 10 is 'left').
    env.legacy_intersection_check  False: the -1.5 intersection check compares against the
                          full oracle observation; True: against the landmark text only (the
                          reference: any wrong answer mentioning an intersection gets -1.5).
    env.language_only     True for V-IRL-L; False for V-IRL-VL (the 2x2 street-view grid).
    env.view_headings     (0, 90, 180, 270): heading offsets of the 2x2 grid, row-major, as the
                          prompt says ([front, right / back, left]); (-135, -45, 45, 135) is the
                          reference code's grid.
    env.fov               90.0: horizontal field of view of each view, degrees (pitch 0).
    env.view_size         640: pixels of each perspective view before resizing.
    env.resolution        1200: each view is resized to this; the grid is 2 * resolution + 5.
    env.interpolation     'cubic' (the reference) | 'bilinear': panorama sampling.

Evaluation (`reference.md` §6, `decisions.md` row 13; `jaxrl_gen.eval`,
`jaxrl_gen.envs.virl.evaluation.benchmark`):
    eval.benchmarks       'all': a comma list of id (absolute actions), rule_ood (relative
                          actions), visual_ood (the mini routes in order); 'all' = id,rule_ood
                          for V-IRL-L and all three for V-IRL-VL.
    eval.route_split      'heldout': the routes of the ID and rule-OOD evaluations; synthetic
                          data have a held-out split; set 'all' for the published data (the
                          paper evaluates on training routes).
    eval.episodes         48: routes drawn (with replacement) for the ID and rule-OOD evaluations.
    eval.seed             12: the evaluation seed (the reference's; None follows
                          config.seed); episode i resets from key (seed, i).
    eval.verify_iter      2: attempts per rail point (sequential revision).
    eval.batch_size       8: episodes run in lock-step (one batched generation per turn);
                          results do not depend on it.
    eval.visual_ood_data_dir  '': the VLN_mini directory for the visual-OOD evaluation (18 routes
                          in order); '' = the synthetic 'mini' data set.
    eval.seeds, eval.probes   1, 0: repeated evaluation seeds and the memorization probes (every
                          task; `jaxrl_gen.config_lib.eval_repeats`).

RL (mode rl; `jaxrl_gen.train.rl`): `config.ppo.*` is documented in
`jaxrl_gen.config_lib.ppo_config`; V-IRL uses the reference's launched values (15 updates,
lr 1e-6 for V-IRL-L, 1e-7 for V-IRL-VL).
"""

import ml_collections

from jaxrl_gen import config_lib

VARIANTS = ("l", "vl")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  choice = config_lib.parse_arg(arg, variants=VARIANTS, default_variant="l")
  vision = choice.variant == "vl"
  toy = choice.preset in config_lib.TOY_PRESETS

  config = ml_collections.ConfigDict()
  config.task = "virl"
  config.variant = choice.variant
  config.mode = choice.mode
  config.seed = 42

  config.env = ml_collections.ConfigDict()
  config.env.data_dir = ""
  config.env.synthetic = "city"
  config.env.synthetic_seed = 0
  config.env.cache_dir = ""
  config.env.route_split = "train"
  config.env.action_space = "absolute"
  config.env.verify_iter = 2
  config.env.forced_fail_step = True
  config.env.straight_line_length = 5
  config.env.drop_rate = 0.5
  config.env.snap_radius = 20.0
  config.env.wrap_turns = True
  config.env.legacy_intersection_check = False
  config.env.language_only = not vision
  config.env.view_headings = (0, 90, 180, 270)
  config.env.fov = 90.0
  config.env.view_size = 640
  config.env.resolution = 1200
  config.env.interpolation = "cubic"

  config.eval = ml_collections.ConfigDict()
  config.eval.benchmarks = "all"
  config.eval.route_split = "heldout"
  config.eval.episodes = 48
  config.eval.seed = 12
  config.eval.verify_iter = 2
  config.eval.batch_size = 8
  config_lib.eval_repeats(config)
  config.eval.visual_ood_data_dir = ""

  config.ppo = config_lib.ppo_config(num_updates=15, lr=1e-7 if vision else 1e-6, toy=toy,
                                      mode=choice.mode)
  config.grpo = config_lib.grpo_config(config.ppo, toy=toy, mode=choice.mode)

  config.model = config_lib.model_config(choice.preset)
  config.mesh = config_lib.mesh_config(choice.preset)
  config.sampling = config_lib.sampling_config(toy=toy)
  config.experiment = config_lib.experiment_config(
      init_steps=1200 if toy else 25, rl_updates=12 if toy else 15)
  config_lib.train_config(config, lr=5e-7 if vision else 1e-6, steps=25, train_size=1000)
  config.text = config_lib.text_config()

  config.lock()
  return config
