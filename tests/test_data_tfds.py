"""The expert TFDS data set: prepared on disk, reloaded in a fresh process, correct content."""

import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from jaxrl_gen.data import expert_tfds, experts
from jaxrl_gen.envs import general_points as gp

GP_L = gp.EnvParams()
GP_VL = gp.EnvParams(language_only=False, color="black", resolution=120)


def _digest(builder_config, data_dir) -> str:
  """A digest of every example of every split (records in file order)."""
  builder = expert_tfds.ExpertSft(config=builder_config, data_dir=str(data_dir))
  sources = expert_tfds.load_sources(builder)
  h = hashlib.sha256()
  for split in sorted(sources):
    for i in range(len(sources[split])):
      record = sources[split][i]
      for key in sorted(record):
        h.update(key.encode() + bytes(record[key]))
  return h.hexdigest()


_RELOAD = """
import sys, json
sys.path.insert(0, {root!r})
from jaxrl_gen.data import expert_tfds
from tests.test_data_tfds import _digest
config = expert_tfds.builder_config('gp', json.loads({env!r}), size=12, eval_size=4, seed=3)
print(_digest(config, {data_dir!r}))
"""


@pytest.mark.parametrize("params", [GP_L, GP_VL], ids=["gp-l", "gp-vl"])
def test_prepares_and_reloads_in_a_fresh_process(tmp_path, params, repo_root):
  config = expert_tfds.builder_config("gp", params, size=12, eval_size=4, seed=3)
  builder = expert_tfds.prepare(config, tmp_path)
  sources = expert_tfds.load_sources(builder)
  assert {k: len(v) for k, v in sources.items()} == {"train": 12, "test": 4}
  here = _digest(config, tmp_path)
  env = json.dumps(dataclasses.asdict(params))
  out = subprocess.run(
      [sys.executable, "-c", _RELOAD.format(root=str(repo_root), env=env, data_dir=str(tmp_path))],
      check=True, capture_output=True, text=True, cwd=repo_root)
  assert out.stdout.strip().splitlines()[-1] == here


@pytest.mark.parametrize("params", [GP_L, GP_VL], ids=["gp-l", "gp-vl"])
def test_examples_are_expert_answers_to_the_env_prompts(tmp_path, params):
  config = expert_tfds.builder_config("gp", params, size=8, eval_size=2, seed=0,
                                      options={"formula": "random"})
  sources = expert_tfds.load_sources(expert_tfds.prepare(config, tmp_path))
  for split in ("train", "test"):
    for i in range(len(sources[split])):
      pair = expert_tfds.record_pair(sources[split][i])
      hand = gp.Hand.from_cards(pair.meta["cards"], params.face_cards_as_10)
      assert pair.prompt == gp.prompt(hand, params)
      assert gp.verify(pair.response, hand, params)[0] == 5.0
      assert pair.response.startswith('\n{\n  "cards": ')
      if params.language_only:
        assert pair.image is None
      else:
        np.testing.assert_array_equal(np.asarray(pair.image), np.asarray(gp.render(hand, params)))


def test_settings_name_the_data_and_splits_do_not_share_hands(tmp_path):
  a = expert_tfds.builder_config("gp", GP_L, size=30, eval_size=30, seed=0)
  assert a.name == expert_tfds.builder_config("gp", GP_L, size=30, eval_size=30, seed=0).name
  assert a.name.startswith("gp_l_")
  assert a.name != expert_tfds.builder_config("gp", GP_L, size=30, eval_size=30, seed=1).name
  assert a.name != expert_tfds.builder_config(
      "gp", gp.EnvParams(face_cards_as_10=False), size=30, eval_size=30, seed=0).name
  sources = expert_tfds.load_sources(expert_tfds.prepare(a, tmp_path))
  episodes = {split: sorted(json.loads(sources[split][i]["meta"])["episode"]
                            for i in range(30)) for split in sources}
  assert episodes["train"] == episodes["test"] == list(range(30))
  cards = {split: [json.loads(sources[split][i]["meta"])["cards"] for i in range(30)]
           for split in sources}
  assert cards["train"] != cards["test"]


def test_bad_settings_are_clear_errors():
  with pytest.raises(ValueError, match="data sizes"):
    expert_tfds.builder_config("gp", GP_L, size=0, eval_size=1, seed=0)
  with pytest.raises(ValueError, match="no expert data for task 'nope'"):
    experts.episode_pairs("nope", GP_L, {}, 0, 0, 0)
  with pytest.raises(ValueError, match="data.formula='best'"):
    experts.episode_pairs("gp", GP_L, {"formula": "best"}, 0, 0, 0)


def test_virl_routes_give_one_pair_per_rail_point(tmp_path):
  from jaxrl_gen.envs import virl
  from jaxrl_gen.envs.virl import synth

  spec = synth.CitySpec(seed=5, grid=4, pano_width=128, num_routes=6, heldout_fraction=0.25)
  synth.write(tmp_path / "city", [synth.build_city(spec)], with_splits=True)
  params = virl.EnvParams(data_dir=str(tmp_path / "city"))
  config = expert_tfds.builder_config("virl", params, size=2, eval_size=1, seed=0)
  assert config.name.startswith("virl_l_")
  sources = expert_tfds.load_sources(expert_tfds.prepare(config, tmp_path / "data"))
  episodes = [experts.episode_pairs("virl", params, {}, 0, 0, i) for i in range(2)]
  assert len(sources["train"]) == sum(len(e) for e in episodes) > 2
  train = sources["train"]
  stored = sorted((expert_tfds.record_pair(train[i]) for i in range(len(train))),
                  key=lambda p: (p.meta["episode"], p.meta["point"]))
  for e in range(2):
    pairs = [p for p in stored if p.meta["episode"] == e]
    assert [(p.prompt, p.response) for p in pairs] == [(p.prompt, p.response) for p in episodes[e]]
    # Replaying the stored answers walks the route to its end with +1 at every point.
    key = int(np.random.default_rng([0, 0, e]).integers(2**63))
    state, conversation = virl.reset(key, params)
    for pair in pairs:
      assert conversation[-1].text == pair.prompt
      state, conversation, reward, terminated, truncated, _ = virl.step(
          state, pair.response, params)
      assert reward == 1.0 and not truncated
    assert terminated


def test_revision_pairs_put_verified_failures_before_the_expert_answer(tmp_path):
  counts = set()
  for i in range(12):
    (pair,) = experts.episode_pairs("gp", GP_L, {"revisions": 2}, 0, 0, i)
    hand = gp.Hand.from_cards(pair.meta["cards"], GP_L.face_cards_as_10)
    counts.add(len(pair.history))
    for answer, message in pair.history:
      assert gp.verify(answer, hand, GP_L) == (gp.verify(answer, hand, GP_L)[0], message)
      assert gp.verify(answer, hand, GP_L)[0] != 5.0
    roles = [t.role for t in pair.conversation()]
    assert roles == ["user"] + ["assistant", "user"] * len(pair.history) + ["assistant"]
    assert pair.conversation()[-1].text == pair.response
    assert gp.verify(pair.response, hand, GP_L)[0] == 5.0
    # Without revisions, the same episode is the reference's single-turn pair.
    (single,) = experts.episode_pairs("gp", GP_L, {}, 0, 0, i)
    assert (single.prompt, single.response, single.history) == (pair.prompt, pair.response, ())
  assert counts == {0, 1, 2}
  config = expert_tfds.builder_config("gp", GP_L, size=6, eval_size=0, seed=0,
                                      options={"revisions": 2})
  sources = expert_tfds.load_sources(expert_tfds.prepare(config, tmp_path))
  stored = [expert_tfds.record_pair(sources["train"][i]) for i in range(6)]
  by_episode = {p.meta["episode"]: p for p in stored}
  for i, pair in by_episode.items():
    (want,) = experts.episode_pairs("gp", GP_L, {"revisions": 2}, 0, 0, i)
    assert pair.history == want.history and pair.response == want.response
