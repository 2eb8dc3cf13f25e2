"""The SFT sampling hook and `jaxrl-gen eval`: a just-trained tiny run samples during training,
its latest checkpoint restores to the trained parameters (in this process and in a fresh
one) and the command evaluates it end to end."""

import importlib.util
import json
import logging
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import optax
import pytest
from flax import nnx

from jaxrl_gen import config_lib, metrics, parallel
from jaxrl_gen.commands import eval as eval_command
from jaxrl_gen.models import mllama, presets
from jaxrl_gen.train import checkpoint as checkpoint_lib
from jaxrl_gen.train import learner, loop, restore
from jaxrl_gen.train import run as run_lib
from jaxrl_gen.train import state as state_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
EPISODES = 2
OVERRIDES = {  # as --config.<key>=<value>: 2 steps of batch 8 (one row per simulated device)
    "sft.steps": 2, "sft.batch_size": 8, "sft.eval_every": 2, "sft.eval_episodes": EPISODES,
    "data.train_size": 8, "data.eval_size": 0, "log.every": 1, "log.progress": False,
    "log.tensorboard": False, "checkpoint.every": 2, "model.dtype": "float32",
    "sampling.max_new_tokens": 6, "eval.verify_iter": 1, "eval.episodes": EPISODES,
}


def _config(arg, **overrides):
  spec = importlib.util.spec_from_file_location("gp_config", REPO_ROOT / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  for key, value in overrides.items():
    section, name = key.split(".")
    config[section][name] = value
  return config_lib.validate(config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sft_run")
  config = _config("l,sft,tiny-text", **OVERRIDES)
  state = loop.run_sft(config, str(workdir))
  return config, workdir, state


def _params(model):
  return {".".join(map(str, p)): np.asarray(v.get_value())
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_sampling_hook_logs_success_and_parse_rate(trained):
  _, workdir, _ = trained
  records = metrics.read_jsonl(workdir / "metrics.jsonl")
  hooked = [r for r in records if "eval/id/success" in r]
  assert [r["step"] for r in hooked] == [2]
  assert hooked[0]["eval/id/episodes"] == EPISODES
  for key in ("success", "parse_rate", "parse_rate_first", "first_attempt_success"):
    assert 0.0 <= hooked[0][f"eval/id/{key}"] <= 1.0 and f"eval/id/{key}_stderr" in hooked[0]
  log = (workdir / "eval" / "sft_step_2" / "id.jsonl").read_text().splitlines()
  assert json.loads(log[-1])["Trajectory Number"] == EPISODES


def test_run_directory_restores_the_trained_parameters(trained):
  config, workdir, state = trained
  graphdef = mllama.abstract(presets.from_config(config.model, config.mesh))[0]
  mesh = parallel.make_mesh(config.mesh.shape)
  expected = _params(nnx.merge(graphdef, state.params, state.frozen, state.rest))
  latest = workdir / "checkpoints" / "2"
  for source in (workdir, latest):
    restored = _params(restore.load_model(config, str(source), mesh))
    assert restored.keys() == expected.keys()
    for name, value in expected.items():
      np.testing.assert_array_equal(restored[name], value, err_msg=name)
  assert restore.describe(str(workdir)) == f"run checkpoint {latest}"
  assert restore.tokenizer_source(config, str(workdir)) == ""  # the run's: the embedded one


def test_rl_run_directory_restores_the_policy_without_the_value_head(trained, tmp_path):
  config, _, state = trained
  graphdef = mllama.abstract(presets.from_config(config.model, config.mesh))[0]
  model = nnx.merge(graphdef, state.params, state.frozen, state.rest)
  net = learner.actor_critic(model, (8,), seed=0)  # what `train.rl` checkpoints
  _, rl_state = state_lib.create(net, optax.sgd(0.1), seed=0)
  saver = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"), every=1, keep=1,
                                      async_save=False)
  saver.save(1, rl_state, _NoEpisodes())
  saver.close()
  run_lib.write_run_files(config, model.config, str(tmp_path))
  mesh = parallel.make_mesh(config.mesh.shape)
  restored = _params(restore.load_model(config, str(tmp_path), mesh))
  expected = _params(model)
  assert restored.keys() == expected.keys()
  for name, value in expected.items():
    np.testing.assert_array_equal(restored[name], value, err_msg=name)


class _NoEpisodes:
  """The carried-state item an RL checkpoint saves beside the train state."""

  def get_state(self) -> bytes:
    return b""


def test_eval_command_on_the_run_in_a_fresh_process(trained):
  _, workdir, _ = trained
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")  # one device: restore reshards
  args = [f"--config.{k}={v}" for k, v in OVERRIDES.items() if k.startswith(("eval.", "sampl"))]
  result = subprocess.run(
      [sys.executable, "-m", "jaxrl_gen", "eval", "--config=configs/gp.py:l,tiny-text",
       f"--checkpoint={workdir}", "--progress=false", *args],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  results = json.loads((workdir / "eval" / "results.json").read_text())
  assert results["checkpoint"] == f"run checkpoint {workdir / 'checkpoints' / '2'}"
  assert list(results["results"]) == ["id", "rule_ood"]  # 'all' for GP-L
  for name, scores in results["results"].items():
    log = [json.loads(line) for line in (workdir / "eval" / f"{name}.jsonl").read_text()
           .splitlines()]
    assert log[-1]["Trajectory Number"] == scores["episodes"] == EPISODES
    assert log[-1]["Rates"]["CORRECT_SOLUTION"] == scores["success"]
    assert any(line.split()[:2] == [name, "parse_rate"] for line in result.stdout.splitlines())
  assert "success *" in result.stdout and str(workdir / "eval") in result.stdout


def test_without_checkpoint_a_random_model_with_a_warning(caplog):
  config = _config("l,eval,tiny-text")
  with caplog.at_level(logging.WARNING):
    benches, policy = eval_command.prepare(config, None)
  assert "no --checkpoint: evaluating a randomly initialised tiny-text model (seed 42)" in (
      caplog.text)
  assert [b.name for b in benches] == ["id", "rule_ood"]
  assert policy.model.config == presets.from_config(config.model, config.mesh)


def test_a_directory_holding_no_model_is_a_clear_error(tmp_path):
  config = _config("l,eval,tiny-text")
  mesh = parallel.make_mesh(config.mesh.shape)
  with pytest.raises(restore.CheckpointError, match="^" + re.escape(
      f"{tmp_path} is none of: a run directory (checkpoints/), an orbax model "
      "(model_config.json), a Hugging Face model (config.json)") + "$"):
    restore.load_model(config, str(tmp_path), mesh)
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(restore.CheckpointError, match="has no complete checkpoint yet"):
    restore.load_model(config, str(tmp_path), mesh)
