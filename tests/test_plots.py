"""Fig. 5/6-shaped plots from a synthetic JSONL metric log."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxrl_gen import plots


def write_log(path, points=9):
  rng = np.random.default_rng(0)
  with open(path, "w") as f:
    f.write(json.dumps({"note": "a record without branch/flops is ignored"}) + "\n")
    for branch, slope in (("sft", -0.02), ("rl", 0.03)):
      for i in range(points):
        record = {"branch": branch, "flops": 1e18 * (i + 1), "step": i}
        for bench, base in (("id", 0.4), ("rule_ood", 0.12)):
          p = float(np.clip(base + slope * i + rng.normal(0, 0.01), 0, 1))
          record[f"eval/{bench}/success"] = p
          record[f"eval/{bench}/success_stderr"] = float(np.sqrt(p * (1 - p) / 234))
        f.write(json.dumps(record) + "\n")


def test_renders_a_png(tmp_path):
  log = tmp_path / "metrics.jsonl"
  write_log(log)
  records = plots.read_records([str(log)])
  assert len(records) == 18 and plots.benchmarks_in(records) == ["id", "rule_ood"]
  flops, score, stderr = plots.series(records, "rule_ood", "success")["rl"]
  assert np.all(np.diff(flops) > 0) and score.shape == stderr.shape == (9,)
  out = plots.plot(records, str(tmp_path / "fig" / "gp.png"), smooth_window=7, title="GP-L")
  image = np.asarray(Image.open(out).convert("L"), dtype=float)
  assert image.shape[1] > 2 * image.shape[0] and image.std() > 5  # two panels, not blank
  plots.main([str(tmp_path / "cli.png"), str(log), "--panels", "id", "--smooth", "5"])
  assert (tmp_path / "cli.png").stat().st_size > 5000


def test_smoothing_window_is_clamped():
  values = np.array([0.1, 0.3, 0.2, 0.5, 0.4, 0.6])
  np.testing.assert_array_equal(plots.smooth(values[:3], 7), values[:3])  # too few points
  smoothed = plots.smooth(values, 51)  # clamped to 5 points
  assert smoothed.shape == values.shape and not np.allclose(smoothed, values)
  line = np.linspace(0, 1, 8)
  np.testing.assert_allclose(plots.smooth(line, 7), line, atol=1e-12)  # a cubic fit keeps a line


def test_bad_logs(tmp_path):
  log = tmp_path / "bad.jsonl"
  log.write_text('{"branch": "rl", "flops": 1}\nnot json\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON line"):
    plots.read_records([str(log)])
  with pytest.raises(ValueError, match="no eval/"):
    plots.plot([{"branch": "rl", "flops": 1}], str(tmp_path / "x.png"))


def test_recognition_figure_pairs_each_evaluations_success_with_its_recognition(tmp_path):
  """Fig. 8's shape: one panel per (benchmark, recognition benchmark) pair the records hold,
  each branch's points at the FLOPs where both were evaluated."""
  records = []
  for branch, slope in (("rl", 0.05), ("sft", -0.05)):
    for i in range(3):
      record = {"branch": branch, "flops": 1e12 * (i + 1)}
      for bench, metric in (("id", "success"), ("recognition_id", "recognition_accuracy"),
                            ("visual_ood", "success"),
                            ("recognition_visual_ood", "recognition_accuracy")):
        record[f"eval/{bench}/{metric}"] = 0.5 + slope * i
        record[f"eval/{bench}/{metric}_stderr"] = 0.02
      records.append(record)
  out = plots.plot_recognition(records, str(tmp_path / "rec.png"))
  image = np.asarray(Image.open(out).convert("L"), dtype=float)
  assert image.shape[1] > 2 * image.shape[0] * 0.9 and image.std() > 5  # two panels
  only_id = [{k: v for k, v in r.items() if "visual" not in k} for r in records]
  out = plots.plot_recognition(only_id, str(tmp_path / "rec_id.png"))
  assert np.asarray(Image.open(out)).shape[1] < image.shape[1]  # one panel
  with pytest.raises(ValueError, match="recognition_accuracy"):
    plots.plot_recognition([{k: v for k, v in r.items() if "recognition" not in k}
                            for r in records], str(tmp_path / "none.png"))
