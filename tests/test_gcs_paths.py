"""gs:// for every path a user gives, on conftest's in-memory GCS (`fake_gcs`): `sft.init`,
`ppo.init` and `eval --checkpoint` (Hugging Face, orbax model and run directories),
`convert --src/--dst`, and the files an evaluation and the experiment keep in their workdir.

Orbax reads gs:// itself through tensorstore, which the in-memory GCS cannot serve: where
orbax reads, the tests hand it the local directory the gs:// one was uploaded from, so what is
checked is that every other read (the layout, model_config.json, config.json, the tokenizer,
safetensors through their local copy) and every write goes through gs://."""

import json
import os
import shutil

import numpy as np
import pytest
from etils import epath
from flax import nnx

from jaxrl_gen import eval as evaluation, experiment, parallel, paths
from jaxrl_gen.commands import convert, eval as eval_command
from jaxrl_gen.models import hf, mllama, params_io, presets
from jaxrl_gen.text import tokenizer as tokenizer_lib
from jaxrl_gen.train import checkpoint as checkpoint_lib, restore, run as run_lib
from test_eval_resume import Stopped, gp_config, logs, scripted

BUCKET = "gs://bucket"


@pytest.fixture
def gcs(fake_gcs, tmp_path, monkeypatch):
  """The in-memory GCS, with the local copies of its files under tmp_path/cache and the
  working directory tmp_path/cwd (a gs:// path mistaken for a local one lands there)."""
  monkeypatch.setattr(paths, "CACHE", str(tmp_path / "cache"))
  (tmp_path / "cwd").mkdir()
  monkeypatch.chdir(tmp_path / "cwd")
  yield fake_gcs
  assert not os.listdir(tmp_path / "cwd")


def upload(local, url: str) -> str:
  """Copies a local directory tree to `url`."""
  with paths.staged(url) as staging:
    shutil.copytree(local, staging, dirs_exist_ok=True)
  return url


def _params(model) -> dict:
  return {".".join(map(str, k)): np.asarray(v.get_value())
          for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _assert_same_params(a, b):
  pa, pb = _params(a), _params(b)
  assert pa.keys() == pb.keys()
  for name in pa:
    np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  """(model, directory): a random tiny-text model saved as Hugging Face files with the
  embedded tokenizer."""
  config = gp_config("l,sft,tiny-text", episodes=2, verify_iter=1)
  model = mllama.create(presets.from_config(config.model, config.mesh),
                        mesh=parallel.make_mesh((1, -1, 1)), seed=3)
  path = tmp_path_factory.mktemp("hf")
  hf.save_pretrained(model, str(path))
  tokenizer_lib.load("").save_pretrained(str(path))
  return model, path


def test_local_copies_staged_uploads_and_appends(gcs, tmp_path):
  (tmp_path / "src" / "sub").mkdir(parents=True)
  (tmp_path / "src" / "a.json").write_text("{}")
  (tmp_path / "src" / "w.safetensors").write_bytes(b"0" * 10)
  (tmp_path / "src" / "sub" / "b.txt").write_text("b")
  upload(tmp_path / "src", f"{BUCKET}/m")
  assert epath.Path(f"{BUCKET}/m/sub/b.txt").read_text() == "b"  # subdirectories too
  local = paths.local_copy(f"{BUCKET}/m", keep=lambda name: not name.endswith(".safetensors"))
  assert local == str(tmp_path / "cache" / "gs" / "bucket" / "m")
  assert sorted(os.listdir(local)) == ["a.json"]  # the kept files, no subdirectories
  os.utime(os.path.join(local, "a.json"), (0, 0))
  paths.local_copy(f"{BUCKET}/m")
  assert os.stat(os.path.join(local, "a.json")).st_mtime == 0  # same size: not copied again
  assert sorted(os.listdir(local)) == ["a.json", "w.safetensors"]
  assert paths.local_copy(f"{BUCKET}/m/a.json") == os.path.join(local, "a.json")
  assert paths.local_copy(str(tmp_path / "src")) == str(tmp_path / "src")
  for path in (f"{BUCKET}/log.jsonl", str(tmp_path / "log.jsonl")):
    paths.append_text(path, "1\n")
    paths.append_text(path, "2\n")
    assert epath.Path(path).read_text() == "1\n2\n"


def test_a_hugging_face_model_on_gcs_is_sft_init_ppo_init_and_eval_checkpoint(gcs, hf_dir):
  model, local = hf_dir
  url = upload(local, f"{BUCKET}/hf")
  for arg, key in (("l,sft,tiny-text", "sft"), ("l,rl,tiny-text", "ppo")):
    config = gp_config(arg, episodes=2, verify_iter=1)
    with config.unlocked():
      config[key].init = url
    # what the SFT and RL trainers call with their init (train/loop.py, train/rl.py)
    loaded, processor = restore.load_with_processor(config, config[key].init,
                                                    parallel.make_mesh((1, -1, 1)))
    _assert_same_params(loaded, model)
    assert restore.tokenizer_source(config, url) == url
    assert restore.describe(url) == f"checkpoint {url}"
  config = gp_config("l,eval,tiny-text", episodes=2, verify_iter=1)
  _, policy = eval_command.prepare(config, url)  # jaxrl-gen eval --checkpoint=gs://...
  _assert_same_params(policy.model, model)


def _run_dir(tmp_path, model) -> str:
  """A local run directory as the trainer leaves it: checkpoints/<step>/state with the
  parameter group, model_config.json and config.json."""
  run = tmp_path / "run"
  saver = checkpoint_lib.Checkpointer(run / "checkpoints", every=1, keep=2, async_save=False)
  import grain  # noqa: PLC0415

  iterator = iter(grain.MapDataset.range(4).to_iter_dataset())
  saver.save(2, {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}, iterator)
  saver.close()
  (run / restore.MODEL_CONFIG).write_text(model.config.to_json())
  (run / restore.RUN_CONFIG).write_text(json.dumps({"text": {"tokenizer": ""},
                                                    "sft": {"init": ""}}))
  return str(run)


def test_a_run_directory_and_an_orbax_model_on_gcs_load(gcs, hf_dir, tmp_path, monkeypatch):
  model, _ = hf_dir
  run_url = upload(_run_dir(tmp_path, model), f"{BUCKET}/run")
  params_io.save_params(model, str(tmp_path / "orbax"))
  orbax_url = upload(tmp_path / "orbax", f"{BUCKET}/orbax")
  to_local = {run_url: str(tmp_path / "run"), orbax_url: str(tmp_path / "orbax")}

  def local(path) -> str:
    path = os.fspath(path)
    for url, there in to_local.items():
      path = path.replace(url, there)
    return path

  read = restore._restore_params
  monkeypatch.setattr(restore, "_restore_params", lambda step_dir, wanted: (
      read(local(step_dir), wanted)))

  class LocalCheckpointer(params_io.ocp.StandardCheckpointer):
    def restore(self, directory, *args, **kwargs):
      return super().restore(local(directory), *args, **kwargs)

  monkeypatch.setattr(params_io.ocp, "StandardCheckpointer", LocalCheckpointer)
  config = gp_config("l,sft,tiny-text", episodes=2, verify_iter=1)
  mesh = parallel.make_mesh((1, -1, 1))
  assert restore.run_checkpoint(run_url) == (run_url, f"{run_url}/checkpoints/2")
  assert restore.run_checkpoint(f"{run_url}/checkpoints/2") == (run_url,
                                                                f"{run_url}/checkpoints/2")
  assert restore.describe(run_url) == f"run checkpoint {run_url}/checkpoints/2"
  assert restore.saved_tokenizer(run_url) == ""  # the embedded one, as config.json says
  _assert_same_params(restore.load_model(config, run_url, mesh), model)
  assert params_io.is_params_dir(orbax_url)
  _assert_same_params(restore.load_model(config, orbax_url, mesh), model)


def test_convert_reads_and_writes_gcs(gcs, hf_dir):
  model, local = hf_dir
  src = upload(local, f"{BUCKET}/hf")
  assert convert.convert(src, f"{BUCKET}/out", fmt="hf") == "hf"
  out = epath.Path(f"{BUCKET}/out")
  assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors"}
  assert (out / "model.safetensors").read_bytes() == (local / "model.safetensors").read_bytes()
  with pytest.raises(convert.CheckpointError, match="exists and is not empty"):
    convert.convert(src, f"{BUCKET}/out", fmt="hf")


def test_an_evaluation_logs_and_resumes_in_a_gcs_workdir(gcs, tmp_path):
  """The episode logs, their resume state and results.json in gs://: appends become rewrites
  (the fake refuses appends), a stopped evaluation resumes there, and the per-hand outcomes
  read back are those of a local evaluation."""
  config = gp_config("l,eval,tiny-text", episodes=6, verify_iter=3)
  policy, answered = scripted()
  expected = evaluation.evaluate(policy, config, log_dir=str(tmp_path / "whole"),
                                 resume="scripted")
  stopping, _ = scripted(stop_after=len(answered) // 2)
  with pytest.raises(Stopped):
    evaluation.evaluate(stopping, config, log_dir=f"{BUCKET}/ev", resume="scripted")
  policy, _ = scripted()
  assert evaluation.evaluate(policy, config, log_dir=f"{BUCKET}/ev",
                             resume="scripted") == expected
  remote = {p.name: p.read_text() for p in epath.Path(f"{BUCKET}/ev").glob("*.jsonl")}
  assert remote == logs(tmp_path / "whole")
  for name in ("id", "rule_ood"):
    assert (evaluation.outcomes(f"{BUCKET}/ev", name)
            == evaluation.outcomes(str(tmp_path / "whole"), name))

  class Answers:
    sampling_kwargs = {}
  eval_command.run(config, "", [], Answers(), f"{BUCKET}/evrun")
  record = json.loads(epath.Path(f"{BUCKET}/evrun/eval/results.json").read_text())
  assert record["checkpoint"] == "random init"


def test_the_experiments_files_in_a_gcs_workdir(gcs):
  """What `jaxrl-gen experiment` reads back from its workdir: a phase's metrics, a cached
  evaluation (no model loaded), the phase's last evaluation, its JSON files."""
  config = gp_config("l,sft,tiny-text", episodes=2, verify_iter=1)
  root = epath.Path(f"{BUCKET}/exp")
  (root / "init").mkdir(parents=True)
  (root / "init" / "metrics.jsonl").write_text('{"step": 1, "train/flops": 2.0}\n')
  assert experiment._records(f"{BUCKET}/exp/init") == [{"step": 1, "train/flops": 2.0}]
  assert experiment._records(f"{BUCKET}/exp/none") == []
  cached = {"eval/id/success": 0.5}
  (root / "init" / "eval").mkdir(parents=True)
  (root / "init" / "eval" / "results.json").write_text(json.dumps(
      {"eval": config.eval.to_dict(), "results": cached}))
  assert experiment.evaluate_checkpoint(config, "unused", f"{BUCKET}/exp/init/eval") == cached
  assert experiment.end_eval_dir(f"{BUCKET}/exp/init") == f"{BUCKET}/exp/init/eval"
  for step in (5, 12):
    (root / "sft" / "eval" / f"sft_step_{step}").mkdir(parents=True)
  assert experiment.end_eval_dir(f"{BUCKET}/exp/sft") == f"{BUCKET}/exp/sft/eval/sft_step_12"
  experiment._write_json(f"{BUCKET}/exp/phase_seconds.json", {"rl": 1.5})
  assert json.loads((root / "phase_seconds.json").read_text()) == {"rl": 1.5}


def test_the_experiments_report_is_written_to_a_gcs_workdir(gcs):
  """The experiment's last step: curves.jsonl, the figures, summary.json and summary.md, all
  written through epath to the bucket (no local folder of that name)."""
  config = gp_config("l,sft,tiny-text", episodes=2, verify_iter=1)
  config.eval.benchmarks = "id"
  init = {"eval/id/success": 0.25, "eval/id/success_stderr": 0.1, "flops": 1.0}
  curves = [dict(init, branch=b) for b in ("rl", "sft")]
  curves += [dict(init, branch="rl", flops=2.0, **{"eval/id/success": 0.5}),
             dict(init, branch="sft", flops=2.0, **{"eval/id/success": 0.75})]
  summary = experiment._report(config, f"{BUCKET}/exp", curves, {"init": init}, ("rl", "sft"))
  root = epath.Path(f"{BUCKET}/exp")
  assert summary["sft"]["eval/id/success"] == 0.75
  assert json.loads((root / "summary.json").read_text())["init"] == init
  assert len((root / "curves.jsonl").read_text().splitlines()) == 4
  assert (root / "generalization.png").read_bytes()[:4] == b"\x89PNG"
  assert "| init |" in (root / "summary.md").read_text()
  assert not os.path.exists("gs:")


def test_a_config_change_is_recorded_in_a_gcs_workdir(gcs):
  """`--allow_config_changes` appends to <workdir>/config_changes.jsonl: on GCS by rewriting."""
  paths.append_text(f"{BUCKET}/run/{run_lib.CHANGES}", '{"key": "a"}\n')
  paths.append_text(f"{BUCKET}/run/{run_lib.CHANGES}", '{"key": "b"}\n')
  assert [r["key"] for r in evaluation.metrics.read_jsonl(
      f"{BUCKET}/run/{run_lib.CHANGES}")] == ["a", "b"]
