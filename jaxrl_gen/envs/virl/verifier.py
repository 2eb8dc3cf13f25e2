"""The V-IRL verifier (`reference.md` §3.7): a pure function of the answer text that never
raises and never executes anything. Fields are read with `fields` (JSON first, then the
reference regex `"key": "(.*?)"`, in linear time)."""

from __future__ import annotations

from jaxrl_gen.envs import fields

CORRECT_ACTION = 1.0
INCORRECT_ACTION = -1.0
INCORRECT_OBS = -1.5
OVER_BUDGET = -1.0  # the forced-fail step after `verify_iter` graded attempts
OVER_BUDGET_INFO = "Exceed maximum verify steps"

# Pasted after the failure messages; the doubled braces are literal (the reference did not
# format this string), and the message's final '.' follows them.
FORMAT_BLOCK = (
    "\n[Output]\n{{\n"
    '  "current observation": latest observation from the streetview grid,\n'
    '  "current instruction": analyze the full instruction and identify the sentence to be'
    " executed,\n"
    '  "action": the action to be taken chosen from the action space,\n}}')


def _retry(what: str) -> str:
  return f" Please avoid this {what} and try again in the same format:" + FORMAT_BLOCK + "."


MESSAGES = {
    CORRECT_ACTION: "Correct action.",
    "not_at_intersection": "you are not at any intersection." + _retry("observation"),
    "at_intersection": "you are at an intersection." + _retry("observation"),
    INCORRECT_ACTION: "you make incorrect action." + _retry("action"),
}


def verify(answer_text: str, ground_truth, params=None) -> tuple[float, str]:
  """(reward, message) for one answer at one rail point.

  `ground_truth` is the `rails.RailPoint` (anything with `action`, `landmark` and
  `observation`). +1 when the answer's `action` field equals the expert action. Otherwise
  -1.5 when its `current observation` claims an intersection the ground truth does not have
  (or misses one it has), else -1. A missing field reads as the text "None", as in the
  reference. The ground truth compared is the full oracle observation, or with
  `params.legacy_intersection_check` the landmark text only (the reference, where any wrong
  answer that mentions an intersection gets -1.5, even at an intersection).
  """
  text = fields.clip(answer_text)
  parsed = fields.json_object(text)
  action = fields.string_field(text, "action", parsed)
  if action == ground_truth.action:
    return CORRECT_ACTION, MESSAGES[CORRECT_ACTION]
  observation = fields.string_field(text, "current observation", parsed) or "None"
  claims = "intersection" in observation
  legacy = getattr(params, "legacy_intersection_check", False)
  has = "intersection" in (ground_truth.landmark if legacy else ground_truth.observation)
  if claims and not has:
    return INCORRECT_OBS, MESSAGES["not_at_intersection"]
  if has and not claims:
    return INCORRECT_OBS, MESSAGES["at_intersection"]
  return INCORRECT_ACTION, MESSAGES[INCORRECT_ACTION]
