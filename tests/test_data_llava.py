"""The LLaVA-style JSON reader feeds the same conversations as the expert data."""

import json

import numpy as np
import pytest

from jaxrl_gen.data import experts, llava
from jaxrl_gen.envs import general_points as gp

GP_VL = gp.EnvParams(language_only=False, color="black", resolution=96)


def _pairs(params, n=3):
  return [p for i in range(n) for p in experts.episode_pairs("gp", params, {}, 0, 0, i)]


def test_round_trip_of_expert_pairs_with_images(tmp_path):
  pairs = _pairs(GP_VL)
  records = llava.from_pairs(pairs, tmp_path)
  assert records[0]["conversations"][0]["value"].startswith("<image>\n\n[Task Description]")
  path = tmp_path / "data.json"
  path.write_text(json.dumps(records))
  loaded = llava.load(path)
  for pair, record in zip(pairs, loaded):
    conversation = llava.to_conversation(record, tmp_path)
    expected = pair.conversation()
    assert [(t.role, t.text) for t in conversation] == [(t.role, t.text) for t in expected]
    np.testing.assert_array_equal(np.asarray(conversation[0].image), np.asarray(pair.image))
    assert conversation[1].image is None


def test_text_only_records_and_json_lines(tmp_path):
  pairs = _pairs(gp.EnvParams())
  records = llava.from_pairs(pairs)
  assert "image" not in records[0]
  path = tmp_path / "data.jsonl"
  path.write_text("\n".join(json.dumps(r) for r in records))
  conversation = llava.to_conversation(llava.load(path)[1])
  assert conversation == pairs[1].conversation()


def test_multi_turn_record_and_image_list(tmp_path):
  pairs = _pairs(GP_VL, 2)
  for i, pair in enumerate(pairs):
    pair.image.save(tmp_path / f"im{i}.png")
  record = {"image": ["im0.png", "im1.png"], "conversations": [
      {"from": "human", "value": "<image>\nfirst"}, {"from": "gpt", "value": "a"},
      {"from": "human", "value": "second <image>"}, {"from": "gpt", "value": "b"}]}
  conversation = llava.to_conversation(record, tmp_path)
  assert [(t.role, t.text) for t in conversation] == [
      ("user", "first"), ("assistant", "a"), ("user", "second "), ("assistant", "b")]
  np.testing.assert_array_equal(np.asarray(conversation[2].image), np.asarray(pairs[1].image))


@pytest.mark.parametrize("record, message", [
    ({"conversation": []}, r"data.json\[0\]: a record needs a 'conversations' list"),
    ({"conversations": [{"from": "bot", "value": "x"}]}, r"conversations\[0\]: needs 'from'"),
    ({"conversations": [{"from": "human", "value": "x"}]}, "no 'gpt' turn"),
    ({"conversations": [{"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}]},
     "1 <image> markers but 0 images"),
])
def test_malformed_records_are_one_line_errors(tmp_path, record, message):
  path = tmp_path / "data.json"
  path.write_text(json.dumps([record]))
  with pytest.raises(ValueError, match=message):
    llava.load(path)


def test_missing_or_broken_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="no such file"):
    llava.load(tmp_path / "nope.json")
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(ValueError, match="not JSON or JSON lines"):
    llava.load(tmp_path / "bad.json")
