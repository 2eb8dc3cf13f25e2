"""V-IRL prompt texts (`reference.md` §3.5-3.6), byte-identical to the reference: the
released checkpoints were fine-tuned on exactly these strings (typos and trailing spaces
included)."""

from __future__ import annotations

from typing import Sequence

ACTION_SPACE_ABSOLUTE = (
    '"forward()": indicates moving forward one step\n'
    '"turn_direction(x)": indicates adjust the ego agent direction towards x direction. x could'
    " be any following 8 directions ['north', 'northeast', 'east', 'southeast', 'south',"
    " 'southwest', 'west', 'northwest']\n"
    '"stop()": indicates the navigation is finished.')
ACTION_SPACE_RELATIVE = (
    '"forward()": indicates moving forward one step\n'
    '"turn_direction(x)": indicates adjust the ego agent direction towards x direction. x could'
    " be any following ['left', 'right', 'slightly left', 'slightly right']\n"
    '"stop()": indicates the navigation is finished.')

_TASK_L = ("You are an expert in navigation. You will receive a sequence of instructions to"
           " follow. You\n")
_TASK_VL = ("You are an expert in navigation. You will receive a sequence of instructions to"
            " follow while observing your surrounding stree tviews. You\n")
_TASK_REST = (
    "are also provided with your observation and action history in text. Your goal is to first"
    " analyze the instruction and identify the next sentence to be executed. \n"
    "Then, you need to provide the action to be taken based on the current observation and"
    " instruction.\n")
_OBSERVATION_FORMAT = (
    "[Observation format]\n"
    "You observe a 2x2 grid of streetview images with the following headings:\n"
    "[front, right\n"
    " back, left]\n"
    "You need to identify if any of the landmarks in the instruction are visible in the street"
    " view grid.\n\n")


def _output_block(observation_from: str) -> str:
  return ("[Output]\n{\n"
          f'  "current observation": latest observation from the {observation_from},\n'
          '  "current instruction": analyze the full instruction and identify the sentence to be'
          " executed,\n"
          '  "action": the action to be taken chosen from the action space,\n}\n')


def prompt_text(instruction: str, obs_act_seq: str, *, absolute: bool, vision: bool) -> str:
  """Q_VIRL_L (`vision=False`) or Q_VIRL_VL, filled in."""
  return ("\n[Task Description]\n" + (_TASK_VL if vision else _TASK_L) + _TASK_REST
          + "\n[Instruction]\n" + instruction + "\n\n"
          + (_OBSERVATION_FORMAT if vision else "")
          + "[Action space]\n" + (ACTION_SPACE_ABSOLUTE if absolute else ACTION_SPACE_RELATIVE)
          + "\n\n[Observations and actions sequence]\n" + obs_act_seq + "\n\n"
          + _output_block("street view grid" if vision else "observation sequence"))


def history(past: Sequence[tuple[str, str]], current: str, *, vision: bool) -> str:
  """The observation/action sequence: past (oracle text, action) pairs, then the current step.

  Past steps always show the oracle text; in VL the current one is the image
  ("You observe an image of 4 views; " plus the intersection cue).
  """
  lines = [f"O_{i + 1}: {obs}\nA_{i + 1}: {action}\n" for i, (obs, action) in enumerate(past)]
  n = len(past) + 1
  if vision:
    cue = "You observe an intersection" if "You observe an intersection" in current else ""
    current = f"You observe an image of 4 views; {cue}"
  lines.append(f"O_{n}: {current}\nA_{n}: \n")
  return "".join(lines)


def response(observation: str, instruction: str, action: str) -> str:
  """The expert answer in the SFT target format (ResponseVIRL)."""
  return ("\n{\n"
          f'  "current observation": "{observation}",\n'
          f'  "current instruction": "{instruction}",\n'
          f'  "action": "{action}",\n'
          "}\n")
