"""The miniature study's parts: the pre-training rule family (never the rule-OOD rule), the
compact prompt, the memorization probes on scripted and model policies."""

import importlib.util
import re

import jax
import numpy as np
import pytest
from scipy import special

from jaxrl_gen import eval as evaluation, probes
from jaxrl_gen.data import experts
from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.envs.general_points import evaluation as gp_evaluation
from jaxrl_gen.envs.general_points import rules

COMPACT_RULE = re.compile(r"^J=(\d+) Q=(\d+) K=(\d+)\. Target (\d+)\. Cards: (.*)\.$")


def load_config(repo_root, name, arg=None):
  spec = importlib.util.spec_from_file_location(f"{name}_cfg", repo_root / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_pretraining_family_states_every_value_but_never_the_rule_ood_rule():
  params = gp.EnvParams(prompt="compact")
  stated = []
  for index in range(3000):
    (pair,) = experts.episode_pairs("gp", params, {"rules": "family"}, 0, 0, index)
    j, q, k, target, cards = COMPACT_RULE.match(pair.prompt).groups()
    faces, target = (int(j), int(q), int(k)), int(target)
    stated.append((faces, target))
    assert [faces, target] == [tuple(pair.meta["face_values"]), pair.meta["target"]]
    # The expert answer solves the hand under the rule its prompt states.
    rule = gp.EnvParams(prompt="compact", face_values=faces, target=target)
    hand = gp.Hand.from_cards(pair.meta["cards"], face_values=faces)
    assert cards == ", ".join(hand.plain)
    assert gp.verify(pair.response, hand, rule)[0] == 5.0
  faces = {f for f, _ in stated}
  assert rules.HELD_OUT == (11, 12, 13) and rules.HELD_OUT not in faces
  # Each value the rule-OOD benchmark states is read in some prompts, at its own position.
  assert {f[0] for f in faces} >= {11} and {f[1] for f in faces} >= {12}
  assert {f[2] for f in faces} >= {13}
  # The ID rule (J/Q/K = 10) is one member of the family's 13**3 - 1 rules, so it is rarely
  # stated: family_params draws it about once in 2196, as any other member.
  rng = np.random.default_rng(0)
  draws = [rules.family_params(rng, params).face_values for _ in range(40000)]
  assert 0 < draws.count((10, 10, 10)) < 3 * len(draws) / 2196
  every = {(j, q, k) for j in range(1, 14) for q in range(1, 14) for k in range(1, 14)}
  assert set(draws) == every - {rules.HELD_OUT}
  assert {t for _, t in stated} == set(rules.FAMILY_TARGETS) and 24 in rules.FAMILY_TARGETS


def test_the_reference_prompt_states_any_rule_and_keeps_both_reference_sentences():
  hand = gp.Hand.from_cards(("SA", "C3", "HK", "D6"))
  assert gp.prompts.face_card_message(gp.EnvParams()) == gp.prompts.FACE_CARDS_AS_10
  assert (gp.prompts.face_card_message(gp.EnvParams(face_cards_as_10=False))
          == gp.prompts.FACE_CARDS_AS_11_12_13)
  odd = gp.EnvParams(face_values=(3, 12, 7), target=20)
  assert "'J', 'Q', and 'K' count as '3', '12', and '7' respectively." in gp.prompt(hand, odd)
  compact = gp.EnvParams(face_values=(3, 12, 7), target=20, prompt="compact")
  assert gp.prompt(hand, compact) == "J=3 Q=12 K=7. Target 20. Cards: A, 3, K, 6."
  assert gp.Hand.from_cards(hand.cards, face_values=(3, 12, 7)).numbers == (1, 3, 7, 6)
  with pytest.raises(ValueError, match="face_values"):
    gp.EnvParams(face_values=(1, 2))


def training_rule_answer(state, conversation, params):
  """Answers as if J/Q/K still counted 10: a formula over the hand's ID-rule numbers."""
  del conversation
  numbers = gp.Hand.from_cards(state.hand.cards).numbers
  solutions = gp.solve(numbers, params.target)
  formula = solutions[0] if solutions else "+".join(str(n) for n in numbers)
  return gp.answer_text(state.hand.plain, numbers, f"{formula}={params.target}", params)


@pytest.mark.parametrize("prompt", ["reference", "compact"])
def test_rule_memorization_probe_on_scripted_policies(repo_root, prompt):
  config = load_config(repo_root, "gp", "l")
  config.env.prompt = prompt
  config.eval.benchmarks = "id,rule_ood"
  config.eval.episodes = 24
  memorizer = evaluation.ScriptedPolicy(training_rule_answer)
  scores = evaluation.evaluate(memorizer, config)
  assert scores["rule_ood"]["training_rule"] == 1.0
  assert "training_rule" not in scores["id"]  # the ID rule is the training rule
  reader = evaluation.evaluate(evaluation.expert_policy("gp"), config)["rule_ood"]
  assert reader["training_rule"] == 0.0 and reader["success"] == 1.0


def test_training_rule_needs_the_id_rules_numbers_not_just_any_failure():
  hand = gp.Hand.from_cards(("SK", "H2", "C3", "D4"), face_cards_as_10=False)
  info = {"Cards": hand.cards, "Numbers": hand.numbers}

  def step(formula):
    return experts_transition(info, formula)

  assert gp_evaluation.applies_training_rule(step("10*2+3-4+5")) is False  # an extra 5
  assert gp_evaluation.applies_training_rule(step("10*2+3+4-3")) is False
  assert gp_evaluation.applies_training_rule(step("(10-4)*(3+2)-2")) is False
  assert gp_evaluation.applies_training_rule(step("10*3-2-4"))
  assert not gp_evaluation.applies_training_rule(step("13+2+3+4"))  # the stated rule
  assert not gp_evaluation.applies_training_rule(experts_transition(info, None))


def experts_transition(info, formula):
  from jaxrl_gen.envs import batch  # noqa: PLC0415

  return batch.Transition(0, 0, 0, (), "", -1.0, False, False, None,
                          dict(info, Formula=formula))


def mini_config(repo_root, count=6):
  config = load_config(repo_root, "gp_mini", "eval")
  config.eval.probes = count
  return config


def test_exact_match_probe_tells_recall_from_solving(repo_root, tmp_path):
  from jaxrl_gen.data import expert_tfds, sources  # noqa: PLC0415

  config = mini_config(repo_root)
  config.data.train_size, config.data.eval_size = 6, 6
  train = probes.sft_pairs(config, 6, "train")
  heldout = probes.sft_pairs(config, 6, "test")
  assert [p.prompt for p in train] != [p.prompt for p in heldout]
  # The probes' pairs are the warm-up's data set's examples (stored in TFDS's own order).
  data = sources.from_config(config, str(tmp_path))
  for split, pairs in ((data.train, train), (data.test, heldout)):
    stored = [expert_tfds.record_pair(split[i]) for i in range(6)]
    assert sorted((p.prompt, p.response) for p in stored) == sorted(
        (p.prompt, p.response) for p in pairs)
  recall = {p.prompt: p.response for p in train}

  def memorizer(conversations, key):
    del key
    return [recall.get(c[0].text, "") for c in conversations]

  out = probes.run(memorizer, config, jax.random.key(0))
  assert out["exact_match_train"] == (6, 6) and out["exact_match_heldout"] == (0, 6)
  assert "nll_gap" not in out  # a policy without a model has no likelihoods
  with pytest.raises(ValueError, match="ScriptedPolicy"):
    evaluation.evaluate(evaluation.expert_policy("gp"), config)


def test_answer_nll_is_the_mean_token_nll_of_the_targets(repo_root):
  from flax import nnx  # noqa: PLC0415

  from jaxrl_gen import parallel, sampling  # noqa: PLC0415
  from jaxrl_gen.models import mllama, presets  # noqa: PLC0415
  from jaxrl_gen.policy import ModelPolicy  # noqa: PLC0415
  from jaxrl_gen.text import processor as processor_lib  # noqa: PLC0415

  config = mini_config(repo_root, 3)
  mesh = parallel.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  model_config = presets.from_config(config.model, config.mesh)
  model = mllama.Model(model_config, rngs=nnx.Rngs(0))
  processor = processor_lib.from_config(config, model_config)
  policy = ModelPolicy(model, processor, mesh=mesh,
                       sampling_kwargs=sampling.kwargs_from_config(config.sampling))
  pairs = probes.sft_pairs(config, 3, "train")
  expected = []
  for pair in pairs:
    encoded = processor.encode_sft(pair.conversation(), last_only=True)
    logits = np.asarray(model(np.asarray(encoded.ids)[None]).logits[0], np.float64)
    logp = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    targets = np.nonzero(encoded.loss_mask)[0]
    expected += [-logp[t - 1, encoded.ids[t]] for t in targets]
  assert probes.answer_nll(policy, pairs) == pytest.approx(np.mean(expected), rel=1e-4)
