"""`jaxrl-gen play`: start episodes, show exactly what the model sees, score typed answers.

    jaxrl-gen play --config=configs/gp.py:vl --workdir=runs/play --answer='{"cards": ...}'
    echo '(10-4)*(3+1)' | jaxrl-gen play --config=configs/gp.py:l
    jaxrl-gen play --config=configs/virl.py:vl --answer='turn_direction(north)'

GeneralPoints: for each hand (hand i uses the seed `config.seed + i`) it prints the cards, the
exact prompt, and the path of the rendered GP-VL image (written for both variants, so a person
can look at the cards). V-IRL: for each route it prints the prompt at every rail point (a fresh
prompt after each correct move) and, for V-IRL-VL, writes the street-view grid. Answers come
from `--answer` (repeatable), else from stdin: typed interactively at a terminal (an empty
line moves to the next hand), or read line by line until EOF when piped; with neither, the
hands are just shown. Answers are consumed in order, each one an attempt on
the current hand, until its episode ends (solved, or the verification budget is spent); then
the next hand is dealt. Each attempt prints the reward, the verifier's message, the remaining
budget and the user turn the model would see next.

A GeneralPoints line without a "formula" key is taken as a bare formula (e.g. `(10-4)*(3+1)`
or `10*3-6*1=24`) and wrapped into the answer format claiming the dealt cards and their
numbers, so for GP-VL only the arithmetic is graded (the card recognition check passes). A
V-IRL line without an "action" key is taken as a bare action (`forward()`,
`turn_direction(north)`, `stop()`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Iterator

from absl import flags

from jaxrl_gen import envs
from jaxrl_gen.envs.general_points import canvas, prompts, solver

DEFAULT_WORKDIR = os.path.join("runs", "play")

_HANDS = flags.DEFINE_integer("hands", 1, "How many hands (V-IRL: routes) to play.",
                              lower_bound=1)
_ANSWER = flags.DEFINE_multi_string(
    "answer", None, "An answer to score (repeatable; each is one attempt, in order). A bare "
    "formula is wrapped into the answer format with the dealt cards.")
_SHOW_SOLUTIONS = flags.DEFINE_boolean("show_solutions", False,
                                       "Also print every solver formula for each hand.")


def wrap_answer(text: str, hand, params) -> str:
  """The answer as given, or a bare formula wrapped into an answer claiming the dealt cards."""
  if '"formula"' in text:
    return text
  return json.dumps({"cards": list(hand.plain), "number": list(hand.numbers),
                     "formula": text.strip()})


def wrap_action(text: str) -> str:
  """The V-IRL answer as given, or a bare action wrapped into the answer format."""
  return text if '"action"' in text else json.dumps({"action": text.strip()})


def _answers() -> Iterator[str | None]:
  """The answers in order; None (interactive only) asks to move on to the next hand."""
  if _ANSWER.value:
    yield from _ANSWER.value
  elif sys.stdin is not None and sys.stdin.isatty():
    while True:
      try:
        line = input("answer (empty line: next hand, Ctrl-D: quit)> ")
      except EOFError:
        print()
        return
      yield line.strip() or None
  elif sys.stdin is not None:
    for line in sys.stdin:
      if line.strip():
        yield line.rstrip("\n")


def _show_hand(index: int, total: int, seed: int, state, params, workdir: str):
  hand = state.hand
  print(f"=== hand {index + 1}/{total} (seed {seed}) ===")
  print(f"cards: {' '.join(hand.cards)}   ranks: {list(hand.plain)}   numbers: {list(hand.numbers)}")
  path = os.path.join(workdir, f"hand_{index}.png")
  canvas.render(hand, params).save(path)
  seen = "the GP-VL observation" if not params.language_only else "what GP-VL would see"
  print(f"image ({seen}): {path}")
  print("--- prompt (exact text; starts with a newline, ends with a blank line) ---")
  sys.stdout.write(state.conversation[0].text)
  print("--- end of prompt ---")
  if _SHOW_SOLUTIONS.value:
    formulas = solver.solutions(hand.numbers, params.target)
    print(f"solutions ({len(formulas)}): {', '.join(formulas)}")
    print(f"expert answer:{prompts.expert_answer(hand, params)}")


def _show_virl_point(state, params, workdir: str, name: str):
  """The prompt at the current rail point (and the VL grid, written to the workdir)."""
  from jaxrl_gen.envs import virl  # V-IRL loads its route data on first use

  print(f"--- rail point {state.position + 1}/{len(state.plan.rail)}"
        f" (route {state.route_index}) ---")
  if not params.language_only:
    path = os.path.join(workdir, f"{name}_point{state.position}.png")
    state.conversation[0].image.save(path)
    print(f"image (the V-IRL-VL street-view grid): {path}")
  sys.stdout.write(state.conversation[0].text)
  print("--- end of prompt ---")
  if _SHOW_SOLUTIONS.value:
    print(f"expert answer:{virl.expert_answer(state, params)}")


def _play_virl(config, params, workdir: str, answers: Iterator[str | None]):
  from jaxrl_gen.envs import virl

  for index in range(_HANDS.value):
    seed = config.seed + index
    state, _ = virl.reset(seed, params)
    print(f"=== route {index + 1}/{_HANDS.value} (seed {seed}) ===")
    _show_virl_point(state, params, workdir, f"route_{index}")
    while not state.done:
      answer = next(answers, None)
      if answer is None:
        break
      print(f"answer: {answer}")
      position = state.position
      state, _, reward, terminated, truncated, info = virl.step(
          state, wrap_action(answer), params)
      print(f"reward {reward:g}: {info['Verify Info']}")
      if terminated or truncated:
        print("  route " + ("completed" if info["is_success"] else "failed")
              + (" (truncated: no attempts left)" if truncated else ""))
      elif state.position != position:
        _show_virl_point(state, params, workdir, f"route_{index}")
      else:
        print(f"  next user turn: {state.conversation[-1].text}")
    print()


def _show_result(state, reward, terminated, truncated, info, params):
  print(f"attempt {state.attempts}: reward {reward:g}")
  print(f"  formula read: {info['Formula']!r}" if info["Formula"] is not None
        else "  (answer ignored: the verification budget was spent)")
  print(f"  message: {info['message']}")
  if terminated:
    print("  solved: episode terminated")
  elif truncated:
    print("  episode truncated: no attempts left")
  else:
    left = info["Remaining Step"]
    if left > 0:
      print(f"  remaining graded attempts: {left}")
    else:
      print("  budget spent: the next answer is ignored and scored -1 (forced_fail_step)")
    print(f"  next user turn: {state.conversation[-1].text}")


def main(config, workdir: str | None):
  params = envs.params_from_config(config)
  workdir = workdir or DEFAULT_WORKDIR
  os.makedirs(workdir, exist_ok=True)
  answers = _answers()
  if config.task == "virl":
    return _play_virl(config, params, workdir, answers)
  gp_env = envs.get("gp")
  for index in range(_HANDS.value):
    seed = config.seed + index
    state, _ = gp_env.reset(seed, params)
    _show_hand(index, _HANDS.value, seed, state, params, workdir)
    while not state.done:
      answer = next(answers, None)
      if answer is None:
        break
      print(f"answer: {answer}")
      state, _, reward, terminated, truncated, info = gp_env.step(
          state, wrap_answer(answer, state.hand, params), params)
      _show_result(state, reward, terminated, truncated, info, params)
    print()
