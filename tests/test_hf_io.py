"""HF checkpoints: load -> save -> transformers loads it -> identical logits; both Mllama
namings; sharded checkpoints; bad checkpoints fail with one line naming the tensor or file;
`jaxrl-gen convert` both ways."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import transformers
from safetensors.numpy import load_file, save_file

import hf_reference as ref
from jaxrl_gen.commands import convert
from jaxrl_gen.models import hf
from jaxrl_gen.models.hf_config import CheckpointError


@pytest.fixture(scope="module")
def mllama_dir(tmp_path_factory):
  reference = ref.mllama(num_layers=5, cross=(3,))
  return reference, ref.save(reference, tmp_path_factory.mktemp("mllama"))


def _inputs():
  rng = np.random.default_rng(0)
  ids = rng.integers(3, 96, size=(2, 7))
  ids[:, 1] = 96
  return dict(input_ids=ids, **ref.image_batch(rng, [[6], [2]], seq=7, image_at=1))


def test_round_trip_through_transformers(mllama_dir, tmp_path):
  reference, path = mllama_dir
  # small shards force several files and an index
  hf.save_pretrained(hf.load_pretrained(path), str(tmp_path / "out"), max_shard_bytes=200_000)
  files = sorted(os.listdir(tmp_path / "out"))
  assert "model.safetensors.index.json" in files
  assert sum(f.endswith(".safetensors") for f in files) > 2
  reloaded = transformers.MllamaForConditionalGeneration.from_pretrained(str(tmp_path / "out"))
  inputs = _inputs()
  np.testing.assert_array_equal(ref.logits(reloaded, **inputs), ref.logits(reference, **inputs))
  # and our loader reads the sharded, indexed checkpoint it wrote
  again = hf.load_pretrained(str(tmp_path / "out"))
  got = np.asarray(again(**{k: np.asarray(v) for k, v in inputs.items()}).logits)
  assert np.abs(got - ref.logits(reference, **inputs)).max() <= 1e-4


def test_tied_llama_round_trip(tmp_path):
  reference = ref.llama(tied=True)
  ours = hf.load_pretrained(ref.save(reference, tmp_path / "in"))
  hf.save_pretrained(ours, str(tmp_path / "out"))
  assert "lm_head.weight" not in load_file(str(tmp_path / "out" / "model.safetensors"))
  reloaded = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "out"))
  ids = np.random.default_rng(0).integers(0, 96, (2, 5))
  np.testing.assert_array_equal(ref.logits(reloaded, input_ids=ids),
                                ref.logits(reference, input_ids=ids))


def test_newer_transformers_naming_loads(mllama_dir, tmp_path):
  reference, path = mllama_dir
  shutil.copy(os.path.join(path, "config.json"), tmp_path)
  renamed = {}
  for name, array in load_file(os.path.join(path, "model.safetensors")).items():
    for old, new in (("language_model.model.", "model.language_model."),
                     ("language_model.lm_head.", "lm_head."),
                     ("vision_model.", "model.vision_model."),
                     ("multi_modal_projector.", "model.multi_modal_projector.")):
      if name.startswith(old):
        name = new + name[len(old):]
        break
    renamed[name] = array
  save_file(renamed, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
  inputs = _inputs()
  model = hf.load_pretrained(str(tmp_path))
  got = np.asarray(model(**{k: np.asarray(v) for k, v in inputs.items()}).logits)
  assert np.abs(got - ref.logits(reference, **inputs)).max() <= 1e-4


def test_bfloat16_parameters(mllama_dir):
  _, path = mllama_dir
  model = hf.load_pretrained(path, dtype="bfloat16")
  assert model.lm_head.kernel[...].dtype.name == "bfloat16"
  full = hf.load_pretrained(path)
  ids = _inputs()["input_ids"]
  diff = np.abs(np.asarray(model(ids).logits) - np.asarray(full(ids).logits)).max()
  assert 0 < diff < 0.05


def _broken(src, dst, change):
  """A sharded copy of checkpoint `src` (index + 3 files), then `change(dst, index)`."""
  hf.save_pretrained(hf.load_pretrained(src), str(dst), max_shard_bytes=300_000)
  with open(dst / "model.safetensors.index.json") as f:
    index = json.load(f)["weight_map"]
  change(dst, index)
  return str(dst)


def _rewrite(dst, index, name, edit):
  file = dst / index[name]
  tensors = load_file(str(file))
  edit(tensors)
  save_file(tensors, str(file), metadata={"format": "pt"})


Q = "language_model.model.layers.4.self_attn.q_proj.weight"
CASES = {
    "missing shard": (lambda d, i: os.remove(d / i[Q]), "missing checkpoint shard model-000"),
    "wrong shape": (lambda d, i: _rewrite(d, i, Q, lambda t: t.update({Q: t[Q][:, :-1]})),
                    f"tensor '{Q}' in model-000"),
    "unknown tensor": (lambda d, i: _rewrite(d, i, Q, lambda t: t.update(extra=np.zeros(2))),
                       "unexpected tensor 'extra' in model-000"),
    "missing tensor": (lambda d, i: _rewrite(d, i, Q, lambda t: t.pop(Q)), f"missing tensor '{Q}'"),
    "corrupt header": (lambda d, i: (d / i[Q]).write_bytes(b"\xff" * 8 + b"{not json"),
                       "corrupt safetensors file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_checkpoints_fail_with_one_line(mllama_dir, tmp_path, case):
  _, path = mllama_dir
  change, message = CASES[case]
  broken = _broken(path, tmp_path / "ckpt", change)
  with pytest.raises(CheckpointError) as info:
    hf.load_pretrained(broken)
  text = str(info.value)
  print(f"{case}: {text}")
  assert message in text and "\n" not in text
  if case == "wrong shape":
    assert "has shape (64, 63), expected (64, 64)" in text


def test_convert_hf_to_orbax_and_back(mllama_dir, tmp_path):
  reference, path = mllama_dir
  assert convert.convert(path, str(tmp_path / "orbax")) == "orbax"
  assert convert.convert(str(tmp_path / "orbax"), str(tmp_path / "hf")) == "hf"
  reloaded = transformers.MllamaForConditionalGeneration.from_pretrained(str(tmp_path / "hf"))
  inputs = _inputs()
  np.testing.assert_array_equal(ref.logits(reloaded, **inputs), ref.logits(reference, **inputs))


def test_convert_cli_errors_are_one_line(tmp_path, repo_root):
  result = subprocess.run(
      [sys.executable, "-m", "jaxrl_gen", "convert", f"--src={tmp_path}", f"--dst={tmp_path}/x"],
      cwd=repo_root, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=str(repo_root)))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f"jaxrl-gen convert: {tmp_path} is neither a Hugging Face model (config.json) nor an"
      " orbax checkpoint (model_config.json)")
