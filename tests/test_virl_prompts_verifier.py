"""V-IRL prompts byte-identical to the reference (`reference.md` §3.5-3.6) and the verifier's
rewards and messages (§3.7), including hostile answers."""

import builtins
import contextlib
import os
import pickle
import subprocess
import types
from unittest import mock

from hypothesis import given, settings, strategies as st

from jaxrl_gen.envs.virl import prompts, verifier

INSTRUCTION = (
    "1. First, turn slightly right to face northeast.\n"
    "2. Move forward until you reach next intersection where The Dutch is on your right.\n"
    "3. Turn left to face northwest.\n"
    "4. Move forward until you reach destination where Shuka is on your right.\n")
PAST = [("No landmarks nearby; ", "turn_direction(northeast)"),
        ("No landmarks nearby; ", "forward()")]
CURRENT = "The Dutch is on your right; You observe an intersection"

# The rendered Q_VIRL_L of reference.md §3.6, with the absolute action space inserted.
EXPECTED_L = '''
[Task Description]
You are an expert in navigation. You will receive a sequence of instructions to follow. You
are also provided with your observation and action history in text. Your goal is to first analyze the instruction and identify the next sentence to be executed. 
Then, you need to provide the action to be taken based on the current observation and instruction.

[Instruction]
1. First, turn slightly right to face northeast.
2. Move forward until you reach next intersection where The Dutch is on your right.
3. Turn left to face northwest.
4. Move forward until you reach destination where Shuka is on your right.


[Action space]
"forward()": indicates moving forward one step
"turn_direction(x)": indicates adjust the ego agent direction towards x direction. x could be any following 8 directions ['north', 'northeast', 'east', 'southeast', 'south', 'southwest', 'west', 'northwest']
"stop()": indicates the navigation is finished.

[Observations and actions sequence]
O_1: No landmarks nearby; 
A_1: turn_direction(northeast)
O_2: No landmarks nearby; 
A_2: forward()
O_3: The Dutch is on your right; You observe an intersection
A_3: 


[Output]
{
  "current observation": latest observation from the observation sequence,
  "current instruction": analyze the full instruction and identify the sentence to be executed,
  "action": the action to be taken chosen from the action space,
}
'''

# Q_VIRL_VL with the relative action space: the typo, the observation-format block, the image
# line of the current step.
EXPECTED_VL = '''
[Task Description]
You are an expert in navigation. You will receive a sequence of instructions to follow while observing your surrounding stree tviews. You
are also provided with your observation and action history in text. Your goal is to first analyze the instruction and identify the next sentence to be executed. 
Then, you need to provide the action to be taken based on the current observation and instruction.

[Instruction]
1. First, turn slightly right to face northeast.
2. Move forward until you reach next intersection where The Dutch is on your right.
3. Turn left to face northwest.
4. Move forward until you reach destination where Shuka is on your right.


[Observation format]
You observe a 2x2 grid of streetview images with the following headings:
[front, right
 back, left]
You need to identify if any of the landmarks in the instruction are visible in the street view grid.

[Action space]
"forward()": indicates moving forward one step
"turn_direction(x)": indicates adjust the ego agent direction towards x direction. x could be any following ['left', 'right', 'slightly left', 'slightly right']
"stop()": indicates the navigation is finished.

[Observations and actions sequence]
O_1: No landmarks nearby; 
A_1: turn_direction(northeast)
O_2: No landmarks nearby; 
A_2: forward()
O_3: You observe an image of 4 views; You observe an intersection
A_3: 


[Output]
{
  "current observation": latest observation from the street view grid,
  "current instruction": analyze the full instruction and identify the sentence to be executed,
  "action": the action to be taken chosen from the action space,
}
'''

FORMAT_BLOCK = '''
[Output]
{{
  "current observation": latest observation from the streetview grid,
  "current instruction": analyze the full instruction and identify the sentence to be executed,
  "action": the action to be taken chosen from the action space,
}}'''


def test_prompts_are_byte_identical_to_the_reference():
  text_l = prompts.prompt_text(INSTRUCTION, prompts.history(PAST, CURRENT, vision=False),
                               absolute=True, vision=False)
  assert text_l == EXPECTED_L
  text_vl = prompts.prompt_text(INSTRUCTION, prompts.history(PAST, CURRENT, vision=True),
                                absolute=False, vision=True)
  assert text_vl == EXPECTED_VL
  # In VL the current line keeps only the intersection cue.
  assert prompts.history([], "Shuka is on your right; ", vision=True) == (
      "O_1: You observe an image of 4 views; \nA_1: \n")


def test_expert_response_is_the_sft_target_format():
  assert prompts.response("No landmarks nearby; ", "First, turn left to face east.",
                          "turn_direction(east)") == (
      '\n{\n  "current observation": "No landmarks nearby; ",\n'
      '  "current instruction": "First, turn left to face east.",\n'
      '  "action": "turn_direction(east)",\n}\n')


def _truth(action, landmark="No landmarks nearby", intersection=""):
  return types.SimpleNamespace(action=action, landmark=landmark,
                               observation=f"{landmark}; {intersection}")


LEGACY = types.SimpleNamespace(legacy_intersection_check=True)
DEFAULT = types.SimpleNamespace(legacy_intersection_check=False)
AT_CROSSING = _truth("turn_direction(north)", "Shuka is on your left",
                     "You observe an intersection")


def _answer(action, observation="Shuka is on your left; "):
  return prompts.response(observation, "Turn left to face north.", action)


def test_verifier_rewards_and_messages():
  incorrect = ("you make incorrect action. Please avoid this action and try again in the same"
               " format:" + FORMAT_BLOCK + ".")
  not_at = ("you are not at any intersection. Please avoid this observation and try again in"
            " the same format:" + FORMAT_BLOCK + ".")
  at = ("you are at an intersection. Please avoid this observation and try again in the same"
        " format:" + FORMAT_BLOCK + ".")
  forward = _truth("forward()")
  assert verifier.verify(_answer("forward()"), forward, DEFAULT) == (1.0, "Correct action.")
  assert verifier.verify('{"action": "forward()"}', forward, DEFAULT) == (1.0, "Correct action.")
  assert verifier.verify(_answer("stop()"), forward, DEFAULT) == (-1.0, incorrect)
  assert verifier.verify(_answer("stop()", "I observe an intersection"), forward, DEFAULT) == (
      -1.5, not_at)
  assert verifier.verify("no fields at all", forward, DEFAULT) == (-1.0, incorrect)
  # At a real intersection: the default compares with the full oracle observation ...
  assert verifier.verify(_answer("forward()", "an intersection"), AT_CROSSING, DEFAULT) == (
      -1.0, incorrect)
  assert verifier.verify(_answer("forward()"), AT_CROSSING, DEFAULT) == (-1.5, at)
  # ... the reference compared with the landmark text only.
  assert verifier.verify(_answer("forward()", "an intersection"), AT_CROSSING, LEGACY) == (
      -1.5, not_at)
  assert verifier.verify(_answer("forward()"), AT_CROSSING, LEGACY) == (-1.0, incorrect)
  assert verifier.verify(_answer("turn_direction(north)"), AT_CROSSING, LEGACY)[0] == 1.0
  # The field must match exactly: no partial credit, no case folding.
  assert verifier.verify(_answer("turn_direction(North)"), AT_CROSSING)[0] == -1.5
  assert verifier.verify('{"action": ["turn_direction(north)"]}', AT_CROSSING)[0] == -1.5


HOSTILE = st.one_of(
    st.text(max_size=300),
    st.builds(lambda a, o: _answer(a, o), st.text(max_size=40), st.text(max_size=40)),
    st.builds(lambda x: '{"action": ' + x + ', "current observation": ' + x + "}",
              st.sampled_from(["1", "null", "[1, 2]", '{"a": 1}', "1e999", '"\\ud800"', "true"])),
    st.sampled_from([
        '"action": "__import__(\'os\').system(\'touch PWNED\')"',
        '{"action": "forward()"' * 1000,
        '"action": "' * 50_000,
        "[" * 100_000,
        '{"current observation": ' * 5000,
        "\x00\ud800" * 100,
    ]),
)


@contextlib.contextmanager
def _nothing_executes():
  """Any attempt to execute text, unpickle or start a process fails the test."""
  def forbidden(*args, **kwargs):
    raise AssertionError("the verifier tried to execute something")
  with contextlib.ExitStack() as stack:
    for target, name in ((builtins, "eval"), (builtins, "exec"), (builtins, "compile"),
                         (builtins, "__import__"), (pickle, "loads"), (os, "system"),
                         (subprocess, "Popen")):
      stack.enter_context(mock.patch.object(target, name, forbidden))
    yield


@settings(max_examples=300, deadline=None)
@given(answer=HOSTILE, legacy=st.booleans(), crossing=st.booleans())
def test_hostile_answers_never_raise_and_never_execute(answer, legacy, crossing):
  truth = AT_CROSSING if crossing else _truth("forward()")
  with _nothing_executes():
    reward, message = verifier.verify(answer, truth, LEGACY if legacy else DEFAULT)
  assert reward in (1.0, -1.0, -1.5) and isinstance(message, str)


def test_non_string_answers_are_answers_too():
  for answer in (None, 3, ["forward()"], {"action": "forward"}):
    assert verifier.verify(answer, _truth("forward()"))[0] == -1.0
