"""The vision half of the miniature: "SFT memorizes, RL generalizes" on GP-VL, on a laptop's CPU.

    jaxrl-gen experiment --config=configs/gp_vl_mini.py --workdir=runs/gp_vl_mini

    --config=configs/gp_vl_mini.py:ARG   ARG = comma list of a mode (default: rl) and a toy
                                         preset (default: mini-vision), as configs/gp_mini.py

configs/gp_mini.py's protocol (pre-training on the rule family, the warm-up on the ID rule,
then PPO and SFT at equal training FLOPs), on the card image instead of the card list: the
prompt says "Cards in the image." and the answer first names the cards it read
({"cards": [...], "number": [...], "formula": "..."}), which the verifier checks (-1.5 for
cards read wrong).

The model is `mini-vision`: tiny's text decoder (cross-attention at layer 3) over a 3+1-layer
ViT reading the 96 px canvas as one tile of 4x4 patches of 24 px (a card is about one patch
column, two rows). Pre-training is meant to teach it to read rendered hands: every example is
a black-suit hand (spades, clubs) under a rule of the family. Red suits (hearts, diamonds) are
never seen in pre-training, the warm-up or either branch; they are the visual-OOD benchmark.

Status: the pipeline runs end to end (tests/test_gp_vl_mini.py), but this preset does not
learn to read the cards yet. After 300-600 pre-training steps its recognition is at chance,
although a linear probe reads every card from its vision features, so the study's GP-VL
results are not measured.

Every phase evaluates ID, visual OOD (red suits), rule OOD (J/Q/K = 11/12/13) and the two
recognition benchmarks (one attempt, no verification: the share of hands whose cards are read
right), each over `eval.seeds` evaluation seeds, with the probes.
"""

import importlib.util
import os

import ml_collections

# configs/gp_mini.py, loaded by path as it loads configs/gp.py.
_SPEC = importlib.util.spec_from_file_location(
    "jaxrl_gen_configs_gp_mini",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "gp_mini.py"))
gp_mini = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gp_mini)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = gp_mini.miniature("vl", arg, "mini-vision", "configs/gp_vl_mini.py")
  config.env.resolution = 96  # the preset's tile: the canvas is read at its own size
  config.data.max_length = 128  # the image token and the "cards" field: under 110 tokens
  config.sampling.max_new_tokens = 56  # expert answers are 47 tokens with the "cards" field
  config.eval.benchmarks = "id,visual_ood,rule_ood,recognition_id,recognition_visual_ood"
  config.lock()
  return config
