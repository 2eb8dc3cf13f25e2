"""Run files through `etils.epath`: metric records written, cut back on resume and read back
in a local workdir and in a gs:// one (conftest's `fake_gcs`: fsspec's memory file system
under the gs protocol, which refuses appends as GCS does); checkpoints saved and restored
locally, and a gs:// checkpoint directory handed to orbax as it is (orbax's gs:// support
needs google-cloud-storage and a real bucket, so it is not run here)."""

import os

import grain
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxrl_gen import metrics
from jaxrl_gen.train import checkpoint as checkpoint_lib


@pytest.fixture(params=["local", "gcs"])
def workdir(request, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a gs:// path mistaken for a local one would land here
  if request.param == "local":
    return str(tmp_path / "run")
  request.getfixturevalue("fake_gcs")
  return "gs://bucket/run"


def _steps(path):
  return [r["step"] for r in metrics.read_jsonl(path)]


def test_metric_records_are_written_cut_back_on_resume_and_read_back(workdir, tmp_path):
  writer = metrics.MetricWriter(workdir, tensorboard=False)
  assert writer.path == f"{workdir}/metrics.jsonl" and isinstance(writer.path, str)
  for step in range(1, 6):
    writer.write(step, {"train/loss": np.float32(1.0 / step), "train/tokens": step * 10})
  writer.close()
  assert _steps(writer.path) == [1, 2, 3, 4, 5]

  resumed = metrics.MetricWriter(workdir, resume_step=3, tensorboard=False)
  assert _steps(resumed.path) == [1, 2, 3]
  resumed.write(4, {"train/loss": 0.5})
  records = metrics.read_jsonl(resumed.path)
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  assert records[1] == {"step": 2, "train/loss": 0.5, "train/tokens": 20}
  assert records[3] == {"step": 4, "train/loss": 0.5}

  metrics.MetricWriter(workdir, tensorboard=False)  # a fresh run starts an empty file
  assert _steps(writer.path) == []
  assert not os.path.exists(tmp_path / "gs:")


def test_checkpointer_saves_restores_and_removes_a_killed_saves_leftovers(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  state = {"w": jnp.arange(4.0), "b": {"step": jnp.int32(7)}}
  iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
  for _ in range(3):
    next(iterator)
  saver = checkpoint_lib.Checkpointer("run/checkpoints", every=2, keep=1, async_save=False)
  assert str(saver.manager.directory) == str(tmp_path / "run" / "checkpoints")  # made absolute
  assert not saver.save(1, state, iterator)
  assert saver.save(2, state, iterator)
  saver.close()

  leftover = tmp_path / "run" / "checkpoints" / "4.orbax-checkpoint-tmp" / "state"
  leftover.mkdir(parents=True)  # what a run killed mid-save leaves
  (leftover / "partial").write_bytes(b"x" * 1000)

  config = ml_collections.ConfigDict({"checkpoint": {"every": 2, "keep": 1,
                                                     "async_save": False}})
  loader = checkpoint_lib.from_config(config, str(tmp_path / "run"))
  assert os.listdir(tmp_path / "run" / "checkpoints") == ["2"]  # the next start removes it
  fresh = iter(grain.MapDataset.range(10).to_iter_dataset())
  zeros = {"w": jnp.zeros(4), "b": {"step": jnp.int32(0)}}
  restored, step = loader.restore_or(zeros, fresh)
  loader.close()
  assert step == 2
  np.testing.assert_array_equal(restored["w"], state["w"])
  assert int(restored["b"]["step"]) == 7
  assert next(fresh) == 3  # where the saved iterator was


def test_a_gs_checkpoint_directory_reaches_orbax_as_it_is(monkeypatch, tmp_path, fake_gcs):
  monkeypatch.chdir(tmp_path)
  given = []
  monkeypatch.setattr(checkpoint_lib.ocp, "CheckpointManager",
                      lambda directory, **kwargs: given.append(directory))
  config = ml_collections.ConfigDict({"checkpoint": {"every": 1, "keep": 1,
                                                     "async_save": True}})
  checkpoint_lib.from_config(config, "gs://bucket/run")
  assert [str(d) for d in given] == ["gs://bucket/run/checkpoints"]
