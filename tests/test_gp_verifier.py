"""The GeneralPoints verifier: every reward path and message, in both reward modes."""

import json

import pytest

from jaxrl_gen.envs import general_points as gp

PAPER = gp.EnvParams()
LEGACY = gp.EnvParams(reward_mode="legacy")
PAPER_VL = gp.EnvParams(language_only=False, color="black")
LEGACY_VL = gp.EnvParams(language_only=False, color="black", reward_mode="legacy")

A3K6 = gp.Hand.from_cards(("SA", "C3", "HK", "D6"))  # numbers 1, 3, 10, 6
T43A = gp.Hand.from_cards(("ST", "H4", "C3", "DA"))  # numbers 10, 4, 3, 1
THREE_THREE_EIGHT_EIGHT = gp.Hand.from_cards(("S3", "H3", "C8", "D8"))
PARTIAL = "{} is partially correct but the full formula does not match any solution."


def formula(text):
  return json.dumps({"formula": text})


# (hand, formula, paper result, legacy result)
CASES = [
    # correct, inside and outside the solver's family of strings
    (A3K6, "10*3-6*1=24", (5, "Correct solution."), (5, "Correct solution.")),
    (A3K6, "(10*3)-(6*1)", (5, "Correct solution."), (5, "Correct solution.")),
    # wrong value: the prefix walk against the solver strings
    (A3K6, "1+3+6+10=20", (-1, PARTIAL.format("1")), (-1, PARTIAL.format("1"))),
    (THREE_THREE_EIGHT_EIGHT, "3*8+8-3", (-1, "your formula does not match any solution."),
     (-1, "your formula does not match any solution.")),
    # division by zero is a wrong value
    (THREE_THREE_EIGHT_EIGHT, "8/(3-3)*8", (-1, PARTIAL.format("8/(3-")),
     (-1, PARTIAL.format("8/(3-"))),
    # float rounding: exact arithmetic solves it; the legacy float path gives 0 and "."
    (THREE_THREE_EIGHT_EIGHT, "8/(3-8/3)", (5, "Correct solution."), (0, ".")),
    (THREE_THREE_EIGHT_EIGHT, "(8/(3-8/3))", (5, "Correct solution."),
     (-1, "your formula does not match any solution.")),
    # illegal characters (unicode digits included, a deliberate difference from `\d`)
    (A3K6, "10×3-6*1", (-3, "illegal characters."), (-3, "illegal characters.")),
    (A3K6, "10*3 - 6*1", (-3, "illegal characters."), (-3, "illegal characters.")),
    (A3K6, "\u0661\u0660*3-6*1", (-3, "illegal characters."), (-3, "illegal characters.")),
    (A3K6, "__import__('os').system('x')", (-3, "illegal characters."),
     (-3, "illegal characters.")),
    # syntax: the reference's messages; legacy adds -3 per violation
    (A3K6, "10*-3-6*1", (-3, "invalid sequence after operator."),
     (-3, "invalid sequence after operator.")),
    (A3K6, "10**3--6*1", (-3, "invalid sequence after operator."),
     (-6, "invalid sequence after operator, invalid sequence after operator.")),
    (A3K6, "10(3)-6*1", (-3, "invalid sequence before '(', unmatched closing parenthesis."),
     (-6, "invalid sequence before '(', unmatched closing parenthesis.")),
    (A3K6, "10*3-6*1)", (-3, "unmatched closing parenthesis."),
     (-3, "unmatched closing parenthesis.")),
    (A3K6, ")10*3-6*1(",
     (-3, "invalid sequence after ')', invalid sequence after number, invalid sequence before "
      "'(', incomplete formula."),
     (-9, "invalid sequence after ')', invalid sequence after number, invalid sequence before "
      "'('.")),
    (A3K6, "()", (-3, "invalid sequence after ')', unclosed parenthesis."),
     (-5, "invalid sequence after ')', you didn't use numbers: [1, 3, 10, 6].")),
    # what the reference's scan lets through: paper -3; legacy goes on to `eval`
    (A3K6, "(10*3-6*1", (-3, "unclosed parenthesis."), (-1, PARTIAL.format("(10*3-6"))),
    (A3K6, "10*3-6*1+", (-3, "incomplete formula."), (-1, PARTIAL.format("10*3-6*1"))),
    (A3K6, "=24", (-3, "empty formula."), (-2, "you didn't use numbers: [1, 3, 10, 6].")),
    # legacy +1: unevaluable, yet the start of a solution
    (T43A, "(10-4)*(3+1", (-3, "unclosed parenthesis."), (1, "partial solution.")),
    # numbers
    (A3K6, "10*3-6", (-2, "you didn't use numbers: [1]."), (-2, "you didn't use numbers: [1].")),
    (A3K6, "10*3-7*1", (-2, "you used invalid numbers: [7], you didn't use numbers: [6]."),
     (-4, "you used invalid numbers: [7], you didn't use numbers: [6].")),
    (A3K6, "10*3-6*1*1", (-2, "you used numbers: [1] too many times."),
     (-2, "you used numbers: [1] too many times.")),
    (A3K6, "6+6", (-2, "you used numbers: [6] too many times, you didn't use numbers: [1, 3, 10]."),
     (-4, "you used numbers: [6] too many times, you didn't use numbers: [1, 3, 10].")),
    (A3K6, "10*3-6*1*7*7", (-2, "you used invalid numbers: [7]."),
     (-2, "you used invalid numbers: [7].")),
    # leading zeros: the number check reads 03 as 3; Python's eval refuses the literal
    (T43A, "(10-4)*(03+1)", (5, "Correct solution."), (-1, PARTIAL.format("(10-4)*("))),
    # CPython refuses more than 200 open brackets; exact arithmetic does not care
    (T43A, "(" * 199 + "(10-4)*(3+1)" + ")" * 199, (5, "Correct solution."),
     (5, "Correct solution.")),
    (T43A, "(" * 200 + "(10-4)*(3+1)" + ")" * 200, (5, "Correct solution."),
     (-1, PARTIAL.format("("))),
    (T43A, "(" * 10_000 + "(10-4)*(3+1)" + ")" * 10_000, (5, "Correct solution."),
     (-1, PARTIAL.format("("))),
]


@pytest.mark.parametrize("hand, text, paper, legacy", CASES)
def test_reward_paths_and_messages(hand, text, paper, legacy):
  assert gp.verify(formula(text), hand, PAPER) == paper
  assert gp.verify(formula(text), hand, LEGACY) == legacy


def test_the_answer_formats_the_reference_reads():
  sft = '\n{\n  "cards": [\'A\', \'3\', \'K\', \'6\'],\n  "number": [1, 3, 10, 6],\n  "formula": "10*3-6*1=24",\n}'
  for text in (sft, '{"cards": ["A", "3", "K", "6"], "formula": "10*3-6*1=24"}',
               'I think "formula": "10*3-6*1=24" works', '{"formula": "10*3-6*1"}'):
    assert gp.verify(text, A3K6, PAPER) == (5, "Correct solution."), text
  # JSON with a non-string formula still reaches the checks as text
  assert gp.verify('{"formula": 24}', A3K6, PAPER) == (-2, "you used invalid numbers: [24], "
                                                          "you didn't use numbers: [1, 3, 10, 6].")


@pytest.mark.parametrize("params", [PAPER, LEGACY])
def test_a_missing_formula_is_the_literal_None(params):
  for text in ("", "no answer at all", '{"cards": ["A"]}', None, '"formula": "10*3\n-6*1"'):
    assert gp.verify(text, A3K6, params) == (-3, "illegal characters.")


@pytest.mark.parametrize("params", [PAPER_VL, LEGACY_VL])
def test_recognition_compares_rank_multisets(params):
  good = [
      '{"cards": ["10", "4", "3", "A"], "formula": "(10-4)*(3+1)=24"}',  # strict JSON
      '{"cards": [10, 4, 3, 1], "formula": "(10-4)*(3+1)=24"}',  # unquoted numbers, '1' = ace
      '"cards": [A, 3, 4, 10], "formula": "(10-4)*(3+1)=24"',  # unquoted, any order
      '"cards": [\'T\', \'4\', \'3\', \'a\'], "formula": "(10-4)*(3+1)=24"',  # 'T', lower case
      '"cards": ["ten", "four", "3", "ace"], "formula": "(10-4)*(3+1)=24"',
  ]
  assert gp.verify(good[0], T43A, params) == (5, "Correct solution.")
  for text in good[1:4]:
    assert gp.verify(text, T43A, params) == (5, "Correct solution."), text
  # 'four' is not a spelling we normalise: a recognition failure, without a final period
  assert gp.verify(good[4], T43A, params) == (-1.5, "you recognized wrong cards")
  for text in ('{"cards": ["10", "4", "3", "2"], "formula": "(10-4)*(3+1)=24"}',
               '{"cards": ["10", "4", "3"], "formula": "(10-4)*(3+1)=24"}',
               '{"cards": ["10", "4", "3", "A", "A"], "formula": "(10-4)*(3+1)=24"}',
               '{"formula": "(10-4)*(3+1)=24"}'):
    assert gp.verify(text, T43A, params) == (-1.5, "you recognized wrong cards"), text
  # the `number` field is never checked
  assert gp.verify('{"cards": ["10", "4", "3", "A"], "number": [9, 9, 9, 9], '
                   '"formula": "(10-4)*(3+1)=24"}', T43A, params) == (5, "Correct solution.")


def test_recognition_is_checked_first_and_only_for_vl():
  wrong_cards = '{"cards": ["2", "2", "2", "2"], "formula": "x"}'
  assert gp.verify(wrong_cards, T43A, PAPER_VL) == (-1.5, "you recognized wrong cards")
  assert gp.verify(wrong_cards, T43A, PAPER) == (-3, "illegal characters.")


def test_face_card_rule_and_target():
  face_11 = gp.EnvParams(face_cards_as_10=False)
  jqk = gp.Hand.from_cards(("SJ", "HQ", "CK", "DA"), face_cards_as_10=False)
  assert jqk.numbers == (11, 12, 13, 1)
  assert gp.verify(formula("(13-11)*12*1=24"), jqk, face_11) == (5, "Correct solution.")
  assert gp.verify(formula("(13-11)*12+1"), jqk, face_11) == (-1, PARTIAL.format("(13-11)*12"))
  as_10 = gp.Hand.from_cards(("SJ", "HQ", "CK", "DA"))
  assert as_10.numbers == (10, 10, 10, 1)
  assert gp.verify(formula("(13-11)*12*1"), as_10, PAPER) == (
      -2, "you used invalid numbers: [13, 11, 12], you didn't use numbers: [10].")
  assert gp.verify(formula("10*(6-3-1)"), A3K6, gp.EnvParams(target=20)) == (
      5, "Correct solution.")
  assert gp.verify(formula("10*3-6*1"), A3K6, gp.EnvParams(target=20))[0] == -1


def test_hostile_numbers_are_bounded():
  # the reference's int() raises past 4300 digits; here such a token is an invalid number
  huge = "1" * 5000
  message = f"you used invalid numbers: [{huge}], you didn't use numbers: [1]."
  assert gp.verify(formula(f"{huge}*10-6*3"), A3K6, PAPER) == (-2, message)
  assert gp.verify(formula(f"{huge}*10-6*3"), A3K6, LEGACY) == (-4, message)
  zeros = "0" * 5000 + "1"  # leading zeros: still the number 1, read without int() of it all
  assert gp.verify(formula(f"{zeros}*3*10-6"), A3K6, PAPER) == (5, "Correct solution.")
  assert gp.verify(formula(f"{zeros}*3*10-6"), A3K6, LEGACY)[0] == -1  # eval: leading zeros


def test_paper_mode_has_one_reward_per_attempt():
  # every check fails here; the first failing one decides
  text = '{"cards": ["2", "2", "2", "2"], "formula": "7**7 x"}'
  assert gp.verify(text, A3K6, PAPER_VL)[0] == -1.5
  assert gp.verify(text, A3K6, PAPER)[0] == -3
  assert gp.verify(formula("7**7"), A3K6, PAPER) == (-3, "invalid sequence after operator.")
  assert gp.verify(formula("7*7"), A3K6, PAPER)[0] == -2


@pytest.mark.parametrize("text, parses", [
    ("(10-4)*(3+1)", True), ("1+1", True), ("8/(3-3)*8", True), ("03*8", True),
    ("None", False), ("", False), ("1+", False), ("(1+2", False), ("1+2)", False),
    ("1 + 2", False), ("3x8", False), ("*3", False), ("()", False), (None, False),
])
def test_well_formed_is_what_paper_mode_grades_past_its_syntax_checks(text, parses):
  assert gp.well_formed(text) is parses
  if text is not None:
    grade = gp.grade(formula(text), A3K6, PAPER)
    assert (grade.reward != -3) is parses and grade.formula == text
