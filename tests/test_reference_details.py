"""Small behaviours where jaxrl_gen follows the reference code to the letter, in the mode that
promises it (issue 18). The V-IRL instruction counter is in test_virl_rails.py and
test_virl_env.py, next to the rails it describes."""

from jaxrl_gen.envs import general_points as gp

T43A = gp.Hand.from_cards(("ST", "H4", "C3", "DA"))  # plain 10, 4, 3, A
LEGACY_VL = gp.EnvParams(language_only=False, color="black", reward_mode="legacy")
PAPER_VL = gp.EnvParams(language_only=False, color="black")


def _answer(cards: str) -> str:
  return (f'{{\n  "cards": [{cards}],\n  "number": [10, 4, 3, 1],\n'
          '  "formula": "(10-4)*(3+1)=24",\n}')


def test_legacy_gp_vl_reads_a_card_with_spaces_inside_as_the_reference():
  # The reference strips every space from the cards list before splitting it: '1 0' is '10'.
  spaced = _answer("'1 0', '4', '3', 'A'")
  assert gp.verify(spaced, T43A, LEGACY_VL) == (5.0, "Correct solution.")
  assert gp.verify(_answer("' 1 0 ', '4 ', '3', ' A'"), T43A, LEGACY_VL)[0] == 5.0
  # Paper mode keeps an item as written: '1 0' is no rank.
  assert gp.verify(spaced, T43A, PAPER_VL) == (-1.5, "you recognized wrong cards")
  assert gp.verify(_answer("'10', '4', '3', 'A'"), T43A, PAPER_VL) == (5.0, "Correct solution.")
