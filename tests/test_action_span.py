"""Thought / action token masks: the 'field' rule on decoded text, the reference's 'legacy'
rule on token ids (hand-built token lists, indices worked out by hand from reference.md §4.3)."""

import numpy as np
import pytest

from jaxrl_gen.envs.general_points import prompts as gp_prompts
from jaxrl_gen.envs.virl import prompts as virl_prompts
from jaxrl_gen.train import action_span

FORMULA = [330, 60599, 794]  # Llama-3's ` "formula":`


def action_text(pieces, span):
  return "".join(p for p, a in zip(pieces, span.action) if a)


def test_field_rule_gp_answer():
  pieces = ["\n{", "\n ", ' "cards', '":', " ['A',", " '3']", ",\n ", ' "formula', '":', ' "',
            "3", "*8", '=24', '",', "\n}", ""]  # the last piece: EOS, skipped when decoding
  span = action_span.field_masks("".join(pieces), action_span.token_starts(pieces), "formula")
  assert action_text(pieces, span) == ' "formula": "3*8=24",'
  np.testing.assert_array_equal(span.thought + span.action, np.ones(len(pieces)))  # all scored
  assert span.action[-1] == 0 and span.thought[-1] == 1 and not span.constant


def test_field_rule_matches_the_verifier_on_real_answers():
  gp_answer = gp_prompts.answer_text(["A", "3", "K", "6"], [1, 3, 10, 6], "10*3-6*1=24")
  start, end = action_span.field_span(gp_answer, "formula")
  assert gp_answer[start:end] == '"formula": "10*3-6*1=24"'
  virl_answer = virl_prompts.response("No landmarks nearby.", "Turn left.", "turn_direction(east)")
  start, end = action_span.field_span(virl_answer, "action")
  assert virl_answer[start:end] == '"action": "turn_direction(east)"'
  # One character per token: exactly the span's characters are action.
  span = action_span.field_masks(virl_answer, range(len(virl_answer)), "action")
  assert "".join(c for c, a in zip(virl_answer, span.action) if a) == virl_answer[start:end]


def test_field_rule_unquoted_and_absent_fields():
  text = '{"cards": [1, 2], "formula": 8*3,\n}'
  start, end = action_span.field_span(text, "formula")
  assert text[start:end] == '"formula": 8*3,'
  pieces = ["I think", " the answer", " is 24."]
  span = action_span.field_masks("".join(pieces), action_span.token_starts(pieces), "formula")
  np.testing.assert_array_equal(span.action, [0, 0, 0])  # absent: everything is thought
  np.testing.assert_array_equal(span.thought, [1, 1, 1])
  with pytest.raises(ValueError, match="non-decreasing"):
    action_span.field_masks("abc", [0, 2, 1], "formula")


def test_legacy_rule_with_the_pattern():
  #        0   1   2   3   4   5    6      7    8   9   10
  ids = [11, 12, 13, 14, 15, 330, 60599, 794, 16, 17, 18]
  span = action_span.legacy_masks(ids, FORMULA)
  np.testing.assert_array_equal(np.nonzero(span.action)[0], [5, 6, 7, 8, 9, 10])
  np.testing.assert_array_equal(np.nonzero(span.thought)[0], [2, 3, 4])  # token 1 dropped
  assert not span.constant
  # The LAST occurrence decides; id 0 is masked wherever it is.
  ids = [11, 330, 60599, 794, 0, 12, 330, 60599, 794, 13, 14]
  span = action_span.legacy_masks(ids, FORMULA)
  np.testing.assert_array_equal(np.nonzero(span.action)[0], [6, 7, 8, 9, 10])
  np.testing.assert_array_equal(np.nonzero(span.thought)[0], [2, 3, 5])


def test_legacy_rule_without_the_pattern():
  ids = list(range(101, 113))  # 12 tokens, none masked
  span = action_span.legacy_masks(ids, FORMULA)
  np.testing.assert_array_equal(np.nonzero(span.action)[0], [7, 8, 9, 10, 11])  # the last 5
  np.testing.assert_array_equal(np.nonzero(span.thought)[0], [2, 3, 4, 5, 6])  # 2..n-6
  # A masked (id 0) token among the last ones moves the split one further back.
  ids[10] = 0
  span = action_span.legacy_masks(ids, FORMULA)
  np.testing.assert_array_equal(np.nonzero(span.action)[0], [6, 7, 8, 9, 11])
  # Fewer than 4 scored tokens: the constants, no masks.
  for short in ([5], [5, 6, 7, 8], [5, 6, 0, 8, 9]):
    span = action_span.legacy_masks(short, FORMULA)
    assert span.constant and not span.action.any() and not span.thought.any()
  assert not action_span.legacy_masks([5, 6, 7, 8, 9], FORMULA).constant


def test_stack_pads_into_buffer_arrays():
  spans = [action_span.legacy_masks(list(range(1, 9)), FORMULA), action_span.legacy_masks([1], FORMULA)]
  arrays = action_span.stack(spans, 10)
  assert arrays["thought_mask"].shape == arrays["action_mask"].shape == (2, 10)
  np.testing.assert_array_equal(arrays["constant_logp"], [False, True])
  np.testing.assert_array_equal(arrays["action_mask"][0], [0, 0, 0, 1, 1, 1, 1, 1, 0, 0])
  with pytest.raises(ValueError, match="does not fit"):
    action_span.stack(spans, 4)
