"""configs/virl.py: variants, validation through the shared config path, and the settings of
the three V-IRL evaluations."""

import dataclasses
import importlib.util

import pytest

from jaxrl_gen import config_lib, envs
from jaxrl_gen import eval as evaluation
from jaxrl_gen.envs import virl
from jaxrl_gen.envs.virl import synth


def _get_config(repo_root, arg=None):
  spec = importlib.util.spec_from_file_location("virl_config", repo_root / "configs" / "virl.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_variants_build_valid_params(repo_root):
  for arg, language_only in ((None, True), ("l", True), ("vl,tiny", False)):
    config = config_lib.validate(_get_config(repo_root, arg))
    params = envs.params_from_config(config)
    assert isinstance(params, virl.EnvParams) and params.language_only == language_only
    assert config.task == "virl" and envs.get(config.task) is virl
  params = envs.params_from_config(_get_config(repo_root))
  assert (params.verify_iter, params.straight_line_length, params.drop_rate, params.snap_radius,
          params.view_headings, params.fov, params.view_size, params.resolution) == (
              2, 5, 0.5, 20.0, (0, 90, 180, 270), 90.0, 640, 1200)
  assert params.wrap_turns and not params.legacy_intersection_check and params.forced_fail_step
  # Every EnvParams field is a config key, and the reverse.
  assert set(_get_config(repo_root).env.keys()) == {
      f.name for f in dataclasses.fields(virl.EnvParams)}


def test_bad_values_and_words_are_one_line_errors(repo_root):
  with pytest.raises(config_lib.ConfigError, match="unknown word 'xl'"):
    _get_config(repo_root, "xl")
  config = _get_config(repo_root)
  config.env.action_space = "polar"
  with pytest.raises(config_lib.ConfigError, match=r"config.env: action_space='polar'"):
    config_lib.validate(config)
  config = _get_config(repo_root, "vl")
  config.env.view_headings = (-135, -45, 45, 135)  # the reference grid is a valid choice
  assert envs.params_from_config(config_lib.validate(config)).view_headings == (-135, -45, 45, 135)


@pytest.fixture(scope="module")
def small_city(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("virl_config_city"))
  spec = synth.CitySpec(seed=8, grid=4, pano_width=32, num_routes=8, heldout_fraction=0.25)
  synth.write(directory, [synth.build_city(spec)], with_splits=True)
  return directory


def test_benchmarks_pick_the_split_action_space_and_order(repo_root, small_city):
  config = _get_config(repo_root)
  config.env.data_dir = small_city
  config.eval.episodes = 4
  config.eval.verify_iter = 3
  expert = evaluation.expert_policy("virl")
  bench = evaluation.benchmark(config, "id")
  assert bench.params.route_split == "heldout" and bench.params.action_space == "absolute"
  assert (bench.episodes, bench.seed, bench.ordered, bench.params.verify_iter) == (4, 12, False, 3)
  transitions = evaluation.run(expert, bench, batch_size=2)
  assert evaluation.score(bench, transitions)["route_success"] == 1.0
  heldout = set(virl.env.load(bench.params).split("heldout"))
  assert {t.info["route_index"] for t in transitions} <= heldout

  rule_params = evaluation.benchmark(config, "rule_ood").params
  assert rule_params.action_space == "relative"
  state, _ = virl.reset(0, rule_params)
  turns = [p.action for p in state.plan.rail if p.action.startswith("turn_direction")]
  assert turns and all(a[15:-1] in ("left", "right", "slightly left", "slightly right")
                       for a in turns)

  config.eval.visual_ood_data_dir = small_city
  visual = evaluation.benchmark(config, "visual_ood")
  assert (visual.params.data_dir, visual.params.route_split, visual.ordered) == (
      small_city, "all", True)
  assert visual.episodes == 8  # every route of the split
  transitions = evaluation.run(expert, visual, batch_size=3)
  assert [t.info["route_index"] for t in transitions if t.done] == list(range(8))
  with pytest.raises(ValueError, match="benchmark 'ood'"):
    evaluation.benchmark(config, "ood")


def test_visual_ood_defaults_to_the_synthetic_mini_benchmark(repo_root, tmp_path, monkeypatch):
  mini = synth.specs("mini", 0)
  assert len(mini) == 9 and sum(s.num_routes for s in mini) == 18
  assert len({s.style for s in mini}) == 9 and synth.TRAIN_STYLE not in {s.style for s in mini}
  assert synth.specs("city", 0)[0].style == synth.TRAIN_STYLE
  # Two small mini cities in a scratch cache: the benchmark counts their routes.
  small = [dataclasses.replace(s, pano_width=32) for s in mini[:2]]
  monkeypatch.setattr(synth, "specs", lambda kind, seed: small)
  config = _get_config(repo_root, "vl")
  config.env.cache_dir = str(tmp_path)
  visual = evaluation.benchmark(config, "visual_ood")
  assert (visual.params.data_dir, visual.params.synthetic) == ("", "mini")
  assert not visual.params.language_only and visual.ordered and visual.episodes == 4
