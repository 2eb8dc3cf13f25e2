"""configs/gp.py: variants, the argument grammar, and validation of the env section."""

import dataclasses
import importlib.util

import pytest

from jaxrl_gen import config_lib, envs
from jaxrl_gen.envs import general_points as gp


def load_gp_config(repo_root):
  spec = importlib.util.spec_from_file_location("gp_config", repo_root / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_variants(repo_root):
  configs = load_gp_config(repo_root)
  l, vl = configs.get_config("l"), configs.get_config("vl,play,tiny")
  assert configs.get_config().to_dict() == l.to_dict()
  assert envs.params_from_config(l) == gp.EnvParams()
  assert envs.params_from_config(vl) == gp.EnvParams(language_only=False, color="black")
  assert (vl.variant, vl.mode, vl.model.preset) == ("vl", "play", "tiny")
  assert configs.get_config("TINY, VL").variant == "vl"  # any order, any case


def test_env_section_is_exactly_the_env_params(repo_root):
  config = load_gp_config(repo_root).get_config("vl")
  assert set(config.env) == {f.name for f in dataclasses.fields(gp.EnvParams)}
  docstring = load_gp_config(repo_root).__doc__
  for field in config.env:
    assert f"env.{field}" in docstring, f"configs/gp.py does not document env.{field}"


def test_bad_arguments(repo_root):
  configs = load_gp_config(repo_root)
  with pytest.raises(config_lib.ConfigError, match=r"unknown word 'vll'.*did you mean 'vl'"):
    configs.get_config("vll")
  assert configs.get_config("l,grpo").ppo.loss == "grpo_clip"  # every mode is implemented
  with pytest.raises(config_lib.ConfigError, match="names two variants"):
    configs.get_config("l,vl")


def test_locked_config_rejects_unknown_keys(repo_root):
  config = load_gp_config(repo_root).get_config("l")
  with pytest.raises(AttributeError):
    config.env.verify_itr = 3


@pytest.mark.parametrize("field, value, expected", [
    ("color", "blue", "color='blue': must be one of 'mixed', 'red', 'black'"),
    ("deal", "shuffled", "deal='shuffled': must be one of 'independent', 'deck'"),
    ("reward_mode", "strict", "reward_mode='strict': must be one of 'paper', 'legacy'"),
    ("verify_iter", 0, "verify_iter=0: must be an integer >= 1"),
    ("verify_iter", 2.5, "verify_iter=2.5: must be an integer >= 1"),
    ("target", -1, "target=-1: must be a non-negative integer"),
    ("target", True, "target=True: must be a non-negative integer"),
    ("resolution", 10, "resolution=10: must be an integer in [64, 8192]"),
    ("ood", "yes", "ood='yes': must be True or False"),
    ("language_only", 1, "language_only=1: must be True or False"),
    ("card_assets", "/no/such/folder", "card_assets='/no/such/folder': must be a folder"),
])
def test_env_params_validation(field, value, expected):
  with pytest.raises(ValueError) as error:
    gp.EnvParams(**{field: value})
  assert expected in str(error.value) and "\n" not in str(error.value)


def test_validate_names_the_config_field(repo_root):
  config = load_gp_config(repo_root).get_config("l")
  config.env.color = "blue"
  with pytest.raises(config_lib.ConfigError, match=r"^config\.env: color='blue': must be one of"):
    config_lib.validate(config)
  config = load_gp_config(repo_root).get_config("l")
  assert config_lib.validate(config) is config


def test_data_and_eval_seeds_follow_config_seed_unless_set(repo_root):
  """data.seed and eval.seed default to None, config.seed's: a training seed varies the SFT
  data (the experiment's pre-training data too) and the evaluation hands; the reference's
  eval seed 42 is the default's."""
  from jaxrl_gen import eval as evaluation, experiment, probes  # noqa: PLC0415

  config = load_gp_config(repo_root).get_config("l,sft,tiny")
  assert (config.data.seed, config.eval.seed) == (None, None)
  assert config_lib.seed_of(config, "eval") == config_lib.seed_of(config, "data") == 42
  assert evaluation.benchmark(config, "id").seed == 42
  pairs = [p.prompt for p in probes.sft_pairs(config, 4, "train")]
  config.seed = 7
  assert config_lib.seed_of(config, "eval") == config_lib.seed_of(config, "data") == 7
  assert evaluation.benchmark(config, "rule_ood").seed == 7
  assert [p.prompt for p in probes.sft_pairs(config, 4, "train")] != pairs
  pretrain = experiment.branch_config(config, "sft", **{"data.rules": "family"})
  assert config_lib.seed_of(pretrain, "data") == 7  # the pre-training data follow it too
  config.data.seed, config.eval.seed = 0, 42  # set: they stay
  assert (config_lib.seed_of(config, "data"), evaluation.benchmark(config, "id").seed) == (0, 42)
  assert [p.prompt for p in probes.sft_pairs(config, 4, "train")] != pairs  # data seed 0
  config.eval.seed = -1
  with pytest.raises(ValueError, match=r"config.eval.seed=-1"):
    evaluation.benchmarks(config)
  virl = importlib.util.spec_from_file_location("virl_config", repo_root / "configs" / "virl.py")
  module = importlib.util.module_from_spec(virl)
  virl.loader.exec_module(module)
  virl_config = module.get_config("l")
  virl_config.seed = 7
  assert config_lib.seed_of(virl_config, "eval") == 12  # the reference's, set
  assert config_lib.seed_of(virl_config, "data") == 7
