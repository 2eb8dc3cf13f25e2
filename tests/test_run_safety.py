"""What a person sees when a run's files are damaged or its disk misbehaves: a truncated latest
checkpoint is skipped for the previous one (one warning line, no traceback) by the resume and
by `jaxrl-gen eval`; a missing or empty model source, a read-only workdir and a full disk
during a checkpoint are each one line with exit status 2, and the last complete checkpoint
stays usable."""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from jaxrl_gen import parallel
from jaxrl_gen.train import checkpoint as checkpoint_lib
from jaxrl_gen.train import restore

# The resume and the full-disk run load the trained run's executables instead of compiling.
pytestmark = pytest.mark.usefixtures("compile_cache")
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAIN = ("train", "--config=configs/gp.py:l,sft,tiny-text", "--config.sft.steps=4",
         "--config.sft.batch_size=8", "--config.data.train_size=8", "--config.data.eval_size=0",
         "--config.checkpoint.every=2", "--config.log.every=1", "--config.log.progress=False",
         "--config.log.tensorboard=False")
EVAL = ("--config.eval.episodes=1", "--config.eval.verify_iter=1", "--config.eval.benchmarks=id",
        "--config.sampling.max_new_tokens=4", "--progress=false")


def jaxrl_gen(*args) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", XLA_FLAGS="")  # one device
  return subprocess.run([sys.executable, "-m", "jaxrl_gen", *args], cwd=REPO_ROOT, env=env,
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, check=False)


def evaluate(arg: str, *flags: str) -> subprocess.CompletedProcess:
  """`jaxrl-gen eval` of one short episode with the configs/gp.py:`arg` config."""
  return jaxrl_gen("eval", f"--config=configs/gp.py:{arg}", *EVAL, *flags)


def one_line_error(result) -> str:
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  return lines[0]


def lines_about(result, text: str) -> list[str]:
  return [line for line in result.stderr.splitlines() if text in line]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
  """A finished tiny SFT run with checkpoints 2 and 4."""
  workdir = tmp_path_factory.mktemp("run") / "run"
  result = jaxrl_gen(*TRAIN, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  return workdir


def copy_run(trained: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  return workdir


def truncate_largest_array(step_dir: pathlib.Path):
  """Cuts the checkpoint's array files (every file over 4 KiB: parameters and optimizer
  moments alike, so a reader of the parameters alone meets one too) in half, as a copy that
  stopped part-way."""
  for path in (step_dir / "state").rglob("*"):
    if path.is_file() and path.stat().st_size > 4096:
      os.truncate(path, path.stat().st_size // 2)


def test_a_truncated_checkpoint_is_skipped_by_eval_and_resume(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  truncate_largest_array(workdir / "checkpoints" / "4")

  evaluated = evaluate("l,small-text", f"--checkpoint={workdir}")
  assert evaluated.returncode == 0, evaluated.stderr
  [skipped] = lines_about(evaluated, "checkpoint 4")
  assert "is incomplete or corrupt" in skipped and skipped.endswith("using checkpoint 2")
  [other_model] = lines_about(evaluated, "not config.model.preset")  # the run's model is tiny
  assert "holds a tiny-text model (4 layers, hidden 128" in other_model
  assert "small-text" in other_model
  results = json.loads((workdir / "eval" / "results.json").read_text())
  assert results["checkpoint"] == f"run checkpoint {workdir / 'checkpoints' / '2'}"

  resumed = jaxrl_gen(*TRAIN, f"--workdir={workdir}")
  assert resumed.returncode == 0, resumed.stderr
  assert "Traceback" not in resumed.stdout + resumed.stderr
  [skipped] = lines_about(resumed, "checkpoint 4")
  assert "is incomplete or corrupt" in skipped and "using checkpoint 2" in skipped
  assert lines_about(resumed, "resumed from the checkpoint of step 2")
  assert (workdir / "checkpoints.unusable" / "4").is_dir()  # kept for a look, out of the way
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text()
           .splitlines()]
  assert steps == [1, 2, 3, 4]  # the records of steps 3 and 4 written again, once


def test_no_checkpoint_that_restores_is_one_line_and_moves_nothing(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  for step in ("2", "4"):
    truncate_largest_array(workdir / "checkpoints" / step)
  line = one_line_error(jaxrl_gen(*TRAIN, f"--workdir={workdir}"))
  assert line.startswith(f"jaxrl-gen: no checkpoint in {workdir / 'checkpoints'} restores "
                         "(checkpoint 4: ")
  assert "; checkpoint 2: " in line
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  assert not (workdir / "checkpoints.unusable").exists()


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_model_source_without_a_model_is_the_same_line_everywhere(tmp_path, kind):
  source = tmp_path / "model"
  if kind == "empty":
    source.mkdir()
  runs = {"sft.init": jaxrl_gen(*TRAIN, f"--config.sft.init={source}",
                                f"--workdir={tmp_path / 'sft'}"),
          "ppo.init": jaxrl_gen("train", "--config=configs/gp.py:l,rl,tiny-text",
                                f"--config.ppo.init={source}", f"--workdir={tmp_path / 'rl'}"),
          "--checkpoint": evaluate("l,tiny-text", f"--checkpoint={source}",
                                   f"--workdir={tmp_path / 'eval'}")}
  lines = {name: one_line_error(result) for name, result in runs.items()}
  expected = (f"jaxrl-gen: checkpoint {source}: no such directory" if kind == "missing" else
              f"jaxrl-gen: {source} is none of: a run directory (checkpoints/), an orbax model "
              "(model_config.json), a Hugging Face model (config.json)")
  assert lines == dict.fromkeys(runs, expected)


def read_only_directory(path: pathlib.Path) -> pathlib.Path:
  """A directory no one can write, root included (a read-only mount when root ignores the
  mode bits); skips the test where neither works."""
  path.mkdir()
  path.chmod(0o555)
  if not os.access(path, os.W_OK):
    return path
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                           capture_output=True, check=False)
  if mounted.returncode:
    pytest.skip("running as root and cannot mount a read-only file system")
  return path


def test_a_read_only_workdir_is_one_line(tmp_path):
  workdir = read_only_directory(tmp_path / "ro")
  try:
    line = one_line_error(jaxrl_gen(*TRAIN, f"--workdir={workdir}"))
  finally:
    subprocess.run(["umount", str(workdir)], capture_output=True, check=False)
  assert line.startswith(f"jaxrl-gen: workdir {workdir} is not writable (")


def test_a_workdir_under_a_file_is_one_line(tmp_path):
  (tmp_path / "file").write_text("")
  line = one_line_error(jaxrl_gen(*TRAIN, f"--workdir={tmp_path / 'file' / 'run'}"))
  assert line == (f"jaxrl-gen: workdir {tmp_path / 'file' / 'run'} is not writable "
                  "(Not a directory)")


def gp_config(arg: str):
  spec = importlib.util.spec_from_file_location("gp_config", REPO_ROOT / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last(trained, tmp_path):
  size = sum(p.stat().st_size for p in (trained / "checkpoints" / "2").rglob("*") if p.is_file())
  workdir = tmp_path / "run"
  (workdir / "checkpoints").mkdir(parents=True)
  shutil.copytree(trained / "data", workdir / "data")  # the expert data, not generated again
  mount = ["mount", "-t", "tmpfs", "-o", f"size={size * 3 // 2}", "tmpfs",
           str(workdir / "checkpoints")]  # room for one checkpoint, not two
  if subprocess.run(mount, capture_output=True, check=False).returncode:
    pytest.skip("cannot mount a small file system (needs root)")
  try:
    line = one_line_error(jaxrl_gen(*TRAIN, f"--workdir={workdir}"))
    assert line.startswith(f"jaxrl-gen: checkpoint 4 in {workdir / 'checkpoints'}: no space "
                           "left on device (a checkpoint needs about ")
    assert line.endswith(" MB free); checkpoint 2 is intact")
    # No temporary directory is left once the run is opened again (a write still in flight
    # after the failure may have put it back), and the last checkpoint loads.
    checkpoint_lib.Checkpointer(workdir / "checkpoints", every=2, keep=2).close()
    assert os.listdir(workdir / "checkpoints") == ["2"]
    config = gp_config("l,sft,tiny-text")
    model = restore.load_model(config, str(workdir), parallel.make_mesh(config.mesh.shape))
    assert model.config.text.num_layers == 4
  finally:
    subprocess.run(["umount", str(workdir / "checkpoints")], capture_output=True, check=False)
