"""Prompts byte for byte as reference.md §2.5, and the SFT answer format of §2.6."""

import numpy as np

from jaxrl_gen.envs import general_points as gp

HAND = gp.Hand.from_cards(("SA", "C3", "HK", "D6"))

# reference.md §2.5, rendered GP-L prompt (leading newline, the '10'., typo, final blank line).
GP_L = """
[Task Description]
You are an expert 24 points card game player. You will receive a set of 4 cards.
Note that 'J', 'Q', and 'K' count as '10'., and each card must be used once.
Your goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.

[Input]
Cards: ['A', '3', 'K', '6']

[Output]
{
  "cards": [x, y, z, w], where 'J', 'Q', and 'K' count as '10'.,
  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,
  "formula": 'an equation that equals 24',
}

"""

GP_VL_OOD_RULE = """
[Task Description]
You are an expert 24 points card game player. You are observing these four cards in the image.
Note that 'J', 'Q', and 'K' count as '11', '12', and '13' respectively., and each card must be used once.
Your goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.

[Output]
Your response should be a valid json file in the following format:
{
  "cards": [x, y, z, w], where 'J', 'Q', and 'K' count as '11', '12', and '13' respectively.,
  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,
  "formula": 'an equation that equals 24',
}

"""


def test_gp_l_prompt_is_the_reference_string():
  assert gp.prompt(HAND, gp.EnvParams()) == GP_L


def test_gp_vl_prompt_with_the_ood_rule_is_the_reference_string():
  params = gp.EnvParams(language_only=False, face_cards_as_10=False, color="black")
  assert gp.prompt(HAND, params) == GP_VL_OOD_RULE


def test_the_two_other_combinations():
  l_ood = gp.prompt(HAND, gp.EnvParams(face_cards_as_10=False))
  assert l_ood == GP_L.replace("count as '10'.", "count as '11', '12', and '13' respectively.")
  vl = gp.prompt(HAND, gp.EnvParams(language_only=False))
  assert vl == GP_VL_OOD_RULE.replace("count as '11', '12', and '13' respectively.",
                                      "count as '10'.")
  ten = gp.Hand.from_cards(("ST", "H2", "C3", "DQ"))
  assert "Cards: ['10', '2', '3', 'Q']\n" in gp.prompt(ten, gp.EnvParams())
  assert "evaluates to 10 using" in gp.prompt(ten, gp.EnvParams(target=10))


def test_expert_answer_is_the_sft_layout():
  answer = gp.expert_answer(HAND, gp.EnvParams())
  assert answer == ('\n{\n  "cards": [\'A\', \'3\', \'K\', \'6\'],\n  "number": [1, 3, 10, 6],\n'
                    '  "formula": "1*3*10-6=24",\n}')
  assert gp.answer_text(HAND.plain, HAND.numbers, "10*3-6*1=24") == (
      '\n{\n  "cards": [\'A\', \'3\', \'K\', \'6\'],\n  "number": [1, 3, 10, 6],\n'
      '  "formula": "10*3-6*1=24",\n}')
  ood = gp.Hand.from_cards(("SA", "C3", "HK", "D6"), face_cards_as_10=False)
  assert '"number": [1, 3, 13, 6]' in gp.expert_answer(ood, gp.EnvParams(face_cards_as_10=False))


def test_expert_answers_score_5_in_both_modes_and_vary_on_request():
  rng = np.random.default_rng(0)
  for face_10 in (True, False):
    for mode in ("paper", "legacy"):
      for language_only in (True, False):
        params = gp.EnvParams(face_cards_as_10=face_10, reward_mode=mode,
                              language_only=language_only)
        for seed in range(40):
          hand = gp.deal(seed, params)
          assert gp.verify(gp.expert_answer(hand, params), hand, params) == (
              5, "Correct solution.")
          assert gp.verify(gp.expert_answer(hand, params, pick=rng), hand, params)[0] == 5
  params = gp.EnvParams()
  hand = gp.Hand.from_cards(("ST", "H4", "C3", "DA"))
  picks = {gp.expert_answer(hand, params, pick=rng) for _ in range(40)}
  assert len(picks) > 5
  assert gp.expert_answer(hand, params) == gp.expert_answer(hand, params, pick=0)
  assert gp.expert_answer(hand, params, pick=3).endswith(
      f'"formula": "{gp.expert_formulas(hand, params)[3]}=24",\n}}')


def test_expert_formulas_avoid_float_rounding():
  # 3 3 8 8 is the one hand of ranks 1..13 whose only solution rounds in floating point
  hand = gp.Hand.from_cards(("S3", "H3", "C8", "D8"))
  assert gp.expert_formulas(hand, gp.EnvParams()) == ["8/(3-8/3)"]
  # 1 4 5 6: 4/(1-5/6) rounds to 23.99..., 6/(5/4-1) is exact in floats too
  hand = gp.Hand.from_cards(("SA", "H4", "C5", "D6"))
  assert set(gp.solve(hand.numbers)) == {"4/(1-5/6)", "6/(5/4-1)"}
  assert gp.expert_formulas(hand, gp.EnvParams()) == ["6/(5/4-1)"]
  legacy = gp.EnvParams(reward_mode="legacy")
  assert gp.verify('{"formula": "4/(1-5/6)"}', hand, legacy) == (0, ".")
  assert gp.verify(gp.expert_answer(hand, legacy), hand, legacy) == (5, "Correct solution.")
