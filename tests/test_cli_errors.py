"""What a person reads from `jaxrl-gen`: bad input is one line on stderr with exit status 2 and
nothing done, every command's --help shows its flags, `jaxrl-gen config` documents every key,
and progress lines say what really happens."""

import importlib.util
import os
import subprocess
import sys

import ml_collections
import pytest

from jaxrl_gen import config_lib
from jaxrl_gen.data import expert_tfds
from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.main import COMMANDS

COMMON_FLAGS = ("--config:", "--workdir:", "--distributed:", "--coordinator_address:",
                "--num_processes:", "--process_id:")
OWN_FLAG = {"play": "--hands:", "convert": "--src:", "eval": "--checkpoint:",
            "aot": "--topology:"}  # the others have no flags of their own


def jaxrl_gen(repo_root, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "jaxrl_gen", *args], cwd=repo_root,
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                        env=env)


def gp_config(repo_root, arg):
  spec = importlib.util.spec_from_file_location("gp_config", repo_root / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def one_line_error(result) -> str:
  """The single stderr line of a refused command (exit status 2, no traceback)."""
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  return lines[0]


@pytest.mark.parametrize("spelling", ["--config=configs/nope.py:l", "--config configs/nope.py:l"])
def test_a_missing_config_file_is_one_line(repo_root, tmp_path, spelling):
  result = jaxrl_gen(repo_root, "train", *spelling.split(), f"--workdir={tmp_path / 'run'}")
  assert one_line_error(result) == (
      "jaxrl-gen: --config: the config file 'configs/nope.py' does not exist")
  assert not (tmp_path / "run").exists()


def test_a_config_directory_is_one_line(repo_root):
  result = jaxrl_gen(repo_root, "play", f"--config={repo_root / 'configs'}")
  assert one_line_error(result).endswith("configs' is not a file")


def test_a_virl_data_dir_without_its_files_is_one_line(repo_root, tmp_path):
  data, run = tmp_path / "nyc", tmp_path / "run"
  data.mkdir()
  (data / "route_infos.json").write_text("[[], 0]")
  args = ["play", "--config=configs/virl.py:vl", f"--config.env.data_dir={data}",
          f"--workdir={run}"]
  assert one_line_error(jaxrl_gen(repo_root, *args)) == (
      f"jaxrl-gen: env.data_dir='{data}': missing gps_pano_mapping.json, street_views/;"
      " expected the published V-IRL layout: route_infos.json, gps_pano_mapping.json,"
      " street_views/")
  # The published pickle is there: the line says how to convert it.
  (data / "gps_pano_mapping.pkl").write_bytes(b"")
  line = one_line_error(jaxrl_gen(repo_root, *args))
  assert line.endswith(f"; convert {data}/gps_pano_mapping.pkl first, if you trust it: python -m"
                       f" jaxrl_gen.envs.virl.mapping --trust-pickle {data}/gps_pano_mapping.pkl"
                       f" {data}/gps_pano_mapping.json")
  assert sorted(os.listdir(data)) == ["gps_pano_mapping.pkl", "route_infos.json"]
  assert not run.exists()
  missing = tmp_path / "nowhere"
  assert one_line_error(jaxrl_gen(repo_root, "play", "--config=configs/virl.py:l",
                                  f"--config.env.data_dir={missing}")) == (
      f"jaxrl-gen: env.data_dir='{missing}': no such directory; expected the published V-IRL"
      " layout: route_infos.json, gps_pano_mapping.json")


def test_a_misspelt_key_offers_its_abbreviation(repo_root):
  result = jaxrl_gen(repo_root, "train", "--config=configs/gp.py:l,rl,tiny",
                     "--config.ppo.lerning_rate=1e-5")
  assert one_line_error(result).startswith(
      "jaxrl-gen: unknown config key config.ppo.lerning_rate; did you mean config.ppo.lr or")


def test_closest_keys_match_leaves_within_the_section_and_abbreviations():
  config = ml_collections.ConfigDict(
      {"ppo": {"lr": 1.0, "end_lr": 0.0, "num_updates": 2, "gamma": 0.9},
       "optim": {"learning_rate": 1.0, "eps": 1e-7}, "seed": 0})
  assert config_lib.closest_keys(config, "ppo.lerning_rate")[0] == "ppo.lr"
  assert config_lib.closest_keys(config, "optim.lr")[0] == "optim.learning_rate"
  assert config_lib.closest_keys(config, "ppo.num_upd")[0] == "ppo.num_updates"
  assert config_lib.closest_keys(config, "pp.gama") == ["ppo.gamma"]
  assert config_lib.closest_keys(config, "sed") == ["seed"]
  assert config_lib.closest_keys(config, "model.preset") == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_shows_its_own_and_the_common_flags(repo_root, name):
  result = jaxrl_gen(repo_root, name, "--help")
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert f"usage: jaxrl-gen {name} " in out and "Try --helpfull" not in out
  assert all(flag in out for flag in COMMON_FLAGS), out
  if name in OWN_FLAG:
    assert f"{name} flags:" in out and OWN_FLAG[name] in out, out


def test_config_lists_every_key_with_its_value_and_doc(repo_root):
  result = jaxrl_gen(repo_root, "config", "--config=configs/gp.py:l,rl,tiny",
                     "--config.ppo.lr=0.5")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert [line.split(" = ")[0] for line in lines] == config_lib.flat_keys(
      gp_config(repo_root, "l,rl,tiny"))
  assert "ppo.lr = 0.5  # Adam's initial learning rate: the task's value." in lines
  assert "env.target = 24  # 24: the number the formula must reach." in lines
  assert "optim.b2 = 0.98  # 0.9, 0.98." in lines
  # Continuation lines are joined into the one comment.
  assert ("env.verify_iter = 5  # 5: graded attempts per hand (sequential revision)."
          in lines)
  documented = [line for line in lines if "  # " in line]
  assert len(documented) >= len(lines) - 4  # task, variant, mode and seed have no table


def test_generating_expert_data_says_so_instead_of_a_download(tmp_path, capfd):
  config = expert_tfds.builder_config("gp", gp.EnvParams(), size=2, eval_size=1, seed=0)
  expert_tfds.prepare(config, tmp_path)
  out = capfd.readouterr().out
  assert "Downloading" not in out and "Unknown size" not in out
  assert "generating expert SFT data (gp: 2 training + 1 held-out episodes) into" in out
  expert_tfds.prepare(config, tmp_path)  # prepared: nothing to say
  assert capfd.readouterr().out == ""
