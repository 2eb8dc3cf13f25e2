"""`jaxrl-gen convert --src=RUN_DIR`: an SFT run (tiny Mllama) and an RL run (tiny text Llama,
policy + value head) export their trained policy as a Hugging Face directory, with the
tokenizer they trained with, that transformers loads with the run's own logits; the RL value
head stays behind."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

import tiny_rl
from test_eval_command import OVERRIDES, _config
from jaxrl_gen import parallel
from jaxrl_gen.commands import convert
from jaxrl_gen.text import tokenizer as tokenizer_lib
from jaxrl_gen.train import loop, restore, rl


def _logits_equal(config, run_dir, hf_model, vocab):
  ids = np.random.default_rng(0).integers(0, vocab, (2, 11))
  ours = restore.load_model(config, str(run_dir), parallel.make_mesh((1, -1, 1)))
  hf_model.set_attn_implementation("eager")
  with torch.no_grad():
    theirs = hf_model(input_ids=torch.as_tensor(ids)).logits.numpy()
  np.testing.assert_allclose(theirs, np.asarray(ours(ids).logits), atol=1e-4)


def _tensor_names(path) -> set[str]:
  names = set()
  for file in os.listdir(path):
    if file.endswith(".safetensors"):
      with safe_open(os.path.join(path, file), framework="np") as f:
        names |= set(f.keys())
  return names


@pytest.mark.slow  # a tiny SFT run, then the CLI in a fresh process
def test_sft_run_to_hf(tmp_path, repo_root):
  overrides = {**OVERRIDES, "sft.eval_every": 0, "data.dir": str(tmp_path / "data")}
  config = _config("l,sft,tiny", **overrides)
  loop.run_sft(config, str(tmp_path / "run"))
  out = subprocess.run(
      [sys.executable, "-m", "jaxrl_gen.main", "convert", f"--src={tmp_path / 'run'}",
       f"--dst={tmp_path / 'hf'}"], capture_output=True, text=True, cwd=repo_root,
      env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""})
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == f"wrote hf checkpoint to {tmp_path / 'hf'}"
  hf_model = transformers.MllamaForConditionalGeneration.from_pretrained(str(tmp_path / "hf"))
  _logits_equal(config, tmp_path / "run", hf_model, hf_model.config.text_config.vocab_size)
  # the tokenizer the run trained with (the embedded one), template and all
  embedded = tokenizer_lib.load("")
  assert tokenizer_lib.load(tmp_path / "hf").chat_template == embedded.chat_template
  assert len(transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))) == len(embedded)


@pytest.mark.slow  # a tiny RL run
def test_rl_run_to_hf_without_the_value_head(tmp_path, repo_root):
  config = tiny_rl.config(repo_root, ppo_epochs=1)  # what it learns is not the point here
  rl.run_rl(config, str(tmp_path / "run"))
  saved = restore.describe(str(tmp_path / "run"))
  assert saved.endswith(os.path.join("checkpoints", "2"))
  assert convert.convert(str(tmp_path / "run"), str(tmp_path / "hf")) == "hf"
  assert not any("value" in name for name in _tensor_names(tmp_path / "hf"))
  hf_model = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "hf"))
  _logits_equal(config, tmp_path / "run", hf_model, hf_model.config.vocab_size)
  # a step directory converts too (that step's policy), into orbax on request
  assert convert.convert(str(tmp_path / "run" / "checkpoints" / "1"), str(tmp_path / "orbax"),
                         fmt="orbax") == "orbax"
  assert os.path.isfile(tmp_path / "orbax" / "tokenizer.json")


def test_run_without_checkpoint_is_a_one_line_error(tmp_path):
  (tmp_path / "run" / "checkpoints").mkdir(parents=True)
  with pytest.raises(ValueError, match="has no complete checkpoint yet"):
    convert.convert(str(tmp_path / "run"), str(tmp_path / "hf"))
