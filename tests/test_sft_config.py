"""SFT configs: defaults, one-line errors for bad settings, and the data they name."""

import importlib.util
import json

import pytest

from jaxrl_gen import config_lib
from jaxrl_gen.data import experts, llava, sources
from jaxrl_gen.envs import general_points as gp


def _config(path, arg):
  spec = importlib.util.spec_from_file_location("cfg", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.fixture
def gp_sft(repo_root):
  return _config(repo_root / "configs" / "gp.py", "l,sft,tiny")


def test_reference_defaults(repo_root):
  real = _config(repo_root / "configs" / "gp.py", "vl,sft,llama-3.2-11b-vision")
  assert (real.optim.b1, real.optim.b2, real.optim.eps, real.optim.weight_decay) == (
      0.9, 0.98, 1e-7, 0.0)
  assert (real.optim.schedule, real.optim.warmup_ratio, real.optim.max_grad_norm) == (
      "cosine", 0.03, 1.0)
  assert (real.sft.batch_size, real.sft.steps, real.optim.lr) == (128, 400, 5e-7)
  assert real.data.train_size == 51200 and real.checkpoint.every == 20
  assert real.data.revisions == 0  # the reference's single-turn pairs
  toy = _config(repo_root / "configs" / "gp.py", "l,sft,tiny")
  assert (toy.optim.lr, toy.sft.steps, toy.sft.batch_size, toy.data.revisions) == (1e-3, 300, 32, 4)
  virl = _config(repo_root / "configs" / "virl.py", "l,sft,llama-3.2-11b-vision")
  assert (virl.optim.lr, virl.sft.steps, virl.data.train_size) == (1e-6, 25, 1000)
  # Every mode carries the training sections (the experiment command runs both trainers).
  assert _config(repo_root / "configs" / "gp.py", "l").sft.steps == 300


def test_validation_passes_for_the_defaults(gp_sft):
  config_lib.validate(gp_sft)


@pytest.mark.parametrize("key, value, message", [
    ("sft.batch_size", 30, "does not split into config.sft.accum=4"),
    ("sft.freeze", ("vision_(",), "config.sft.freeze: 'vision_(' is not a regular expression"),
    ("data.source", "hub", "config.data.source='hub': must be one of"),
    ("optim.warmup_ratio", 1.5, "config.optim.warmup_ratio=1.5"),
    ("sft.steps", 0, "config.sft.steps=0: must be >= 1"),
    ("data.source", "llava", "needs config.data.llava_json"),
    ("sft.batch_size", 12, "micro-batches of 3 rows do not split over the 8 data shards"),
])
def test_bad_settings_are_one_line_errors(gp_sft, key, value, message):
  gp_sft.sft.accum = 4
  section, name = key.split(".")
  gp_sft[section][name] = value
  with pytest.raises(config_lib.ConfigError, match=message.replace("(", r"\(")):
    config_lib.validate(gp_sft)


def test_embedded_tokenizer_does_not_fit_a_real_preset(repo_root):
  config = _config(repo_root / "configs" / "gp.py", "l,sft,llama-3.2-1b")
  with pytest.raises(config_lib.ConfigError, match="does not fit preset 'llama-3.2-1b'"):
    config_lib.validate_train(config)
  config.text.tokenizer = "/some/checkpoint"
  config_lib.validate_train(config)


def test_llava_source_reads_the_json_and_its_images(gp_sft, tmp_path):
  params = gp.EnvParams(language_only=False, color="black", resolution=64)
  pairs = [p for i in range(3) for p in experts.episode_pairs("gp", params, {}, 0, 0, i)]
  (tmp_path / "train.json").write_text(json.dumps(llava.from_pairs(pairs, tmp_path)))
  gp_sft.data.source = "llava"
  gp_sft.data.llava_json = str(tmp_path / "train.json")
  found = sources.from_config(gp_sft, workdir=None)
  assert found.has_images and found.test is None and len(found.train) == 3
  conversation = found.to_conversation(found.train[2])
  assert conversation[0].text == pairs[2].prompt and conversation[0].image.size == (64, 64)


def test_env_source_prepares_into_the_workdir(gp_sft, tmp_path):
  gp_sft.data.train_size, gp_sft.data.eval_size = 5, 2
  found = sources.from_config(gp_sft, workdir=str(tmp_path))
  assert (len(found.train), len(found.test), found.has_images) == (5, 2, False)
  assert (tmp_path / "data" / "expert_sft").is_dir()
  with pytest.raises(ValueError, match="no --workdir"):
    sources.from_config(gp_sft, workdir=None)


def test_virl_env_source(repo_root, tmp_path):
  from jaxrl_gen.envs.virl import synth

  synth.write(tmp_path / "city", [synth.build_city(synth.CitySpec(
      seed=5, grid=4, pano_width=128, num_routes=6, heldout_fraction=0.25))], with_splits=True)
  config = _config(repo_root / "configs" / "virl.py", "l,sft,tiny")
  config.env.data_dir = str(tmp_path / "city")
  config.data.train_size, config.data.eval_size = 2, 1
  found = sources.from_config(config, workdir=str(tmp_path))
  conversation = found.to_conversation(found.train[0])
  assert "[Action space]" in conversation[0].text and '"action": "' in conversation[1].text
  assert not found.has_images
