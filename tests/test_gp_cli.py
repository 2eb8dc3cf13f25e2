"""`jaxrl-gen play` end to end, in a subprocess as a user runs it."""

import json
import shlex
import subprocess
import sys

from jaxrl_gen.envs import general_points as gp


def play(repo_root, *args, stdin=None):
  return subprocess.run(
      [sys.executable, "-m", "jaxrl_gen", "play", *args], cwd=repo_root, input=stdin,
      stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, text=True,
      timeout=120)


def test_shows_the_hand_prompt_and_image(repo_root, tmp_path):
  result = play(repo_root, "--config=configs/gp.py:vl", f"--workdir={tmp_path}", "--hands=2",
                "--show_solutions")
  assert result.returncode == 0, result.stderr
  params = gp.EnvParams(language_only=False, color="black")
  for index, seed in enumerate((42, 43)):
    state, _ = gp.reset(seed, params)
    assert f"=== hand {index + 1}/2 (seed {seed}) ===" in result.stdout
    assert gp.prompt(state.hand, params) in result.stdout
    assert f"solutions ({len(state.solutions)}): {', '.join(state.solutions)}" in result.stdout
    assert (tmp_path / f"hand_{index}.png").is_file()
    assert f"{tmp_path / f'hand_{index}.png'}" in result.stdout
  assert "attempt" not in result.stdout


def test_scores_answers_in_order(repo_root, tmp_path):
  params = gp.EnvParams(verify_iter=2)
  state, _ = gp.reset(42, params)
  expert = gp.expert_answer(state.hand, params)
  result = play(repo_root, "--config=configs/gp.py:l", f"--workdir={tmp_path}",
                "--config.env.verify_iter=2", "--answer=1+1", f"--answer={expert}")
  assert result.returncode == 0, result.stderr
  out = result.stdout
  reward, message = gp.verify(json.dumps({"formula": "1+1"}), state.hand, params)
  assert f"attempt 1: reward {reward:g}\n" in out and f"message: {message}\n" in out
  assert "remaining graded attempts: 1" in out
  assert f"next user turn: You failed this trial because {message}\n" in out
  assert "attempt 2: reward 5\n" in out and "solved: episode terminated" in out


def test_reads_answers_from_stdin_across_hands(repo_root, tmp_path):
  params = gp.EnvParams(verify_iter=1)
  first, _ = gp.reset(42, params)
  formula = gp.expert_formulas(first.hand, params)[0]
  stdin = f"{formula}\nwrong\n\n1+2\n"
  result = play(repo_root, "--config=configs/gp.py:l", f"--workdir={tmp_path}", "--hands=3",
                "--config.env.verify_iter=1", stdin=stdin)
  assert result.returncode == 0, result.stderr
  out = result.stdout
  hand_2 = out.index("=== hand 2/3")
  hand_3 = out.index("=== hand 3/3")
  assert "attempt 1: reward 5" in out[:hand_2]  # a bare formula, wrapped with the dealt cards
  assert "attempt 1: reward -3" in out[hand_2:hand_3]  # 'wrong': illegal characters
  assert "budget spent: the next answer is ignored" in out[hand_2:hand_3]
  assert "attempt 2: reward -1" in out[hand_2:hand_3]  # the forced-fail step eats '1+2'
  assert "attempt" not in out[hand_3:]


def test_unknown_config_key_is_one_line_naming_the_closest(repo_root, tmp_path):
  result = play(repo_root, "--config=configs/gp.py:l", f"--workdir={tmp_path}",
                "--config.env.verify_itr=3")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "config.env.verify_iter" in lines[0], result.stderr


def test_bad_value_is_one_line(repo_root, tmp_path):
  result = play(repo_root, "--config=configs/gp.py:l", f"--workdir={tmp_path}",
                "--config.env.color=blue")
  assert result.returncode == 2
  assert result.stderr.strip() == (
      "jaxrl-gen: config.env: color='blue': must be one of 'mixed', 'red', 'black'")
  result = play(repo_root, "--config=configs/gp.py:l", f"--workdir={tmp_path}", "--hands=0")
  assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
  assert "hands" in result.stderr


def test_the_readme_stdin_example_solves_the_hand_it_deals(repo_root, tmp_path):
  readme = (repo_root / "README.md").read_text()
  line = next(text for text in readme.splitlines()
              if text.startswith("echo ") and "jaxrl-gen play" in text)
  echo, command = line.split(" | ")
  answer = shlex.split(echo)[1]
  result = play(repo_root, *shlex.split(command)[2:], f"--workdir={tmp_path}",
                stdin=answer + "\n")
  assert result.returncode == 0, result.stderr
  assert "attempt 1: reward 5\n" in result.stdout and "solved: episode terminated" in result.stdout
