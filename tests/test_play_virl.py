"""`jaxrl-gen play` on V-IRL, in a subprocess as a user runs it: prompts, grid images, rewards."""

import subprocess
import sys

from jaxrl_gen.envs import virl
from jaxrl_gen.envs.virl import synth

SPEC = synth.CitySpec(seed=3, grid=4, pano_width=128, num_routes=6, heldout_fraction=0.25)


def test_walks_a_route_with_bare_actions(repo_root, tmp_path):
  data = tmp_path / "city"
  synth.write(str(data), [synth.build_city(SPEC)], with_splits=True)
  params = virl.EnvParams(data_dir=str(data), language_only=False, resolution=64, view_size=64)
  state, _ = virl.reset(42, params)
  first_action = state.point.action
  args = [f"--config.env.data_dir={data}", "--config.env.resolution=64",
          "--config.env.view_size=64", f"--workdir={tmp_path / 'out'}",
          "--answer=turn_direction(nowhere)", f"--answer={first_action}"]
  result = subprocess.run(
      [sys.executable, "-m", "jaxrl_gen", "play", "--config=configs/virl.py:vl", *args],
      cwd=repo_root, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert virl.prompt(state, params) in out
  assert "reward -1: you make incorrect action." in out
  assert "reward 1: Correct action." in out
  moved, *_ = virl.step(state, f'{{"action": "{first_action}"}}', params)
  assert virl.prompt(moved, params) in out  # the fresh prompt at the next rail point
  assert (tmp_path / "out" / "route_0_point0.png").is_file()
  assert (tmp_path / "out" / "route_0_point1.png").is_file()
