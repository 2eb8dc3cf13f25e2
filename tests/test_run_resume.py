"""A workdir changes only after its checkpoint restored, and a resume runs the config the
workdir was run with: another preset or a changed hyperparameter is one line, exit status 2,
nothing written; the keys a resumed run may change are accepted and recorded."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from jaxrl_gen.train import run as run_lib


def _train(repo_root, workdir, *overrides, preset="tiny-text", data=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  command = [sys.executable, "-m", "jaxrl_gen", "train", f"--config=configs/gp.py:l,sft,{preset}",
             f"--workdir={workdir}", f"--config.data.dir={data or workdir.parent / 'data'}",
             "--config.sft.steps=2", "--config.sft.batch_size=4", "--config.sft.eval_every=0",
             "--config.data.train_size=16", "--config.data.eval_size=0",
             "--config.checkpoint.every=2", "--config.log.progress=False", *overrides]
  return subprocess.run(command, cwd=repo_root, env=env, stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, timeout=300)


def _files(workdir):
  return {p: p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}


def _one_line(result) -> str:
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 2-step tiny-text SFT run."""
  workdir = tmp_path_factory.mktemp("runs") / "sft"
  result = _train(pathlib.Path(__file__).resolve().parent.parent, workdir)
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir


def test_another_preset_in_a_trained_workdir_changes_nothing(repo_root, trained):
  before = _files(trained)
  line = _one_line(_train(repo_root, trained, preset="tiny"))
  assert "model.preset 'tiny-text' -> 'tiny'" in line and "--allow_config_changes" in line
  assert _files(trained) == before  # config.json, model_config.json, checkpoints: untouched


def test_a_changed_hyperparameter_is_refused(repo_root, trained):
  before = _files(trained)
  line = _one_line(_train(repo_root, trained, "--config.optim.lr=0.5"))
  assert line.startswith("jaxrl-gen: workdir ") and "optim.lr 0.001 -> 0.5" in line
  assert _files(trained) == before


def test_resumable_keys_and_allowed_changes_are_recorded(repo_root, trained, tmp_path):
  import shutil  # noqa: PLC0415

  workdir = tmp_path / "copy"
  shutil.copytree(trained, workdir)
  data = trained.parent / "data"
  result = _train(repo_root, workdir, "--config.sft.steps=3", "--config.log.every=1", data=data)
  assert result.returncode == 0, result.stderr[-2000:]
  result = _train(repo_root, workdir, "--config.sft.steps=3", "--config.log.every=1",
                  "--config.optim.lr=0.002", "--allow_config_changes", data=data)
  assert result.returncode == 0, result.stderr[-2000:]
  changes = [json.loads(line) for line in (workdir / run_lib.CHANGES).read_text().splitlines()]
  assert [(c["key"], c["saved"], c["now"], c["step"]) for c in changes] == [
      ("log.every", 10, 1, 2), ("sft.steps", 2, 3, 2), ("optim.lr", 0.001, 0.002, 3)]
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["optim"]["lr"] == 0.002 and saved["sft"]["steps"] == 3


def test_changed_keys_lists_both_sides():
  import ml_collections  # noqa: PLC0415

  config = ml_collections.ConfigDict({"a": {"b": 1, "c": 2}, "d": 3})
  saved = {"a": {"b": 1, "c": 5}, "e": 4}
  assert run_lib.changed_keys(config, saved) == {"a.c": (5, 2), "d": (None, 3), "e": (4, None)}
