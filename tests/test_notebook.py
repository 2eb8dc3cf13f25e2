"""notebooks/quickstart.ipynb runs top to bottom in a fresh kernel (nbclient) on the tiny
preset, offline: the install cell is skipped, the hand is solved by the expert answer, the
SFT -> RL runs draw their curves and print an evaluation table, SmolLM2 answers, and the hub
cell says it is skipped."""

import os

import nbclient
import nbformat
import pytest

NOTEBOOK = "notebooks/quickstart.ipynb"


def _text(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", []) if o["output_type"] == "stream")


@pytest.mark.slow  # a kernel, two tiny training runs, two evaluations and SmolLM2
def test_quickstart_notebook_runs(tmp_path, repo_root):
  notebook = nbformat.read(repo_root / NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute(env={**os.environ, "QUICKSTART_DIR": str(tmp_path / "runs"),
                      "HF_HUB_OFFLINE": "1", "HF_TOKEN": "", "XLA_FLAGS": "",
                      "JAX_PLATFORMS": "cpu"})
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
