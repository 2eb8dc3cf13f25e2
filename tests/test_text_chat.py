"""Chat template, prompt encoding against transformers' MllamaProcessor, SFT loss masks."""

import dataclasses

import numpy as np
import pytest

from jaxrl_gen.envs import core
from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.text import chat, images, processor as processor_lib

GP_L = gp.EnvParams()
GP_VL = gp.EnvParams(language_only=False, color="black", resolution=160)


@pytest.fixture(scope="module")
def proc():
  return processor_lib.Processor.create("", image_size=56, max_tiles=4)


def _hf_processor(proc):
  from transformers import MllamaProcessor

  return MllamaProcessor(image_processor=proc.image_processor, tokenizer=proc.tokenizer,
                         chat_template=proc.tokenizer.chat_template)


def test_text_prompt_has_the_system_block_with_the_fixed_date(proc):
  _, conversation = gp.reset(0, GP_L)
  text = chat.render(proc.tokenizer, conversation, date_string="01 Jan 2025")
  assert text == (
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
      "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\n" + conversation[0].text
      + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
  assert chat.render(proc.tokenizer, conversation).count("Today Date: 26 Jul 2024\n") == 1


def test_image_prompt_has_no_system_block_and_the_image_first(proc):
  _, conversation = gp.reset(0, GP_VL)
  text = chat.render(proc.tokenizer, conversation)
  assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>"
                  + conversation[0].text
                  + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("params", [GP_L, GP_VL], ids=["gp-l", "gp-vl"])
def test_prompt_inputs_equal_the_reference_processor_path(proc, params):
  """The reference: apply_chat_template(payload, add_generation_prompt=True), then
  processor(image, text, add_special_tokens=False)."""
  state, conversation = gp.reset(3, params)
  # A revision turn too: the rollout renders whole conversations.
  conversation = core.revise(conversation, '{"formula": "1+2"}', "illegal characters.")
  hf = _hf_processor(proc)
  text = hf.apply_chat_template(core.to_chat(conversation), add_generation_prompt=True,
                                date_string=chat.DEFAULT_DATE)
  pictures = core.images(conversation) or None
  expected = hf(images=pictures, text=text, add_special_tokens=False, return_tensors="np")
  encoded = proc.encode_prompt(conversation)
  np.testing.assert_array_equal(encoded.ids, expected["input_ids"][0])
  if pictures is None:
    assert encoded.images == ()
    return
  arrays = proc.image_inputs([encoded.images], [encoded.ids])
  for key in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask"):
    np.testing.assert_array_equal(arrays[key], expected[key], err_msg=key)
  assert arrays["pixel_values"].shape == (1, 1, 4, 3, 56, 56)


def test_cross_attention_mask_follows_the_image_tokens():
  # Two images in one row, one in the other; tiles 2, 4 and 1.
  ids = [[5, 2048, 7, 8, 2048, 9], [2048, 1, 2, 3]]
  mask = images.cross_attention_mask(ids, [[2, 4], [1]], max_tiles=4, image_token_id=2048)
  assert mask.shape == (2, 6, 2, 4)
  np.testing.assert_array_equal(mask[0, :, 0, :2].all(-1), [0, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(mask[0, :, 1].sum(-1), [0, 0, 0, 0, 4, 4])
  assert mask[0, :, 0, 2:].sum() == 0
  np.testing.assert_array_equal(mask[1, :, 0].sum(-1), [1, 1, 1, 1, 1, 1])  # to the batch end
  assert mask[1, :, 1].sum() == 0
  with pytest.raises(ValueError, match="2 image tokens but 1 images"):
    images.cross_attention_mask([[2048, 2048]], [[1]], 4, 2048)


def _expert_conversation(params, seed=0):
  state, conversation = gp.reset(seed, params)
  return conversation + (core.Turn("assistant", gp.expert_answer(state.hand, params)),)


@pytest.mark.parametrize("eot_newline", [False, True])
@pytest.mark.parametrize("params", [GP_L, GP_VL], ids=["gp-l", "gp-vl"])
def test_sft_mask_covers_exactly_the_response_and_eot(proc, params, eot_newline):
  conversation = _expert_conversation(params)
  p = dataclasses.replace(proc, eot_newline=eot_newline)
  example = p.encode_sft(conversation)
  tok = proc.tokenizer
  prompt_ids = p.encode_prompt(conversation[:1]).ids
  response = conversation[1].text + "<|eot_id|>" + ("\n" if eot_newline else "")
  response_ids = tok(response, add_special_tokens=False)["input_ids"]
  # The prompt part is exactly what generation starts from; the rest is the response.
  np.testing.assert_array_equal(example.ids, np.concatenate([prompt_ids, response_ids]))
  np.testing.assert_array_equal(example.loss_mask,
                                [False] * len(prompt_ids) + [True] * len(response_ids))
  assert tok.decode(example.ids[example.loss_mask]) == response
  assert example.ids[example.loss_mask][-1 - eot_newline] == proc.ids.eot
  assert len(example.images) == (0 if params.language_only else 1)


def test_sft_mask_on_a_multi_turn_revision_conversation(proc):
  state, conversation = gp.reset(4, GP_L)
  wrong = '\n{\n  "cards": [],\n  "number": [],\n  "formula": "1+1=2",\n}'
  state, conversation, *_ = gp.step(state, wrong, GP_L)
  right = gp.expert_answer(state.hand, GP_L)
  conversation = conversation + (core.Turn("assistant", right),)
  example = proc.encode_sft(conversation)
  tok = proc.tokenizer
  # The supervised tokens are the two answers with their <|eot_id|>, in order, nothing else.
  runs = np.split(example.ids, np.flatnonzero(np.diff(example.loss_mask.astype(int))) + 1)
  masks = np.split(example.loss_mask, np.flatnonzero(np.diff(example.loss_mask.astype(int))) + 1)
  supervised = [tok.decode(r) for r, m in zip(runs, masks) if m[0]]
  assert supervised == [wrong + "<|eot_id|>", right + "<|eot_id|>"]
  unsupervised = "".join(tok.decode(r) for r, m in zip(runs, masks) if not m[0])
  assert "You failed this trial because" in unsupervised
  assert tok.decode(example.ids) == chat.render(tok, conversation, add_generation_prompt=False)
  # last_only: the failed answer is context, the revision is the one target.
  last = proc.encode_sft(conversation, last_only=True)
  np.testing.assert_array_equal(last.ids, example.ids)
  assert tok.decode(last.ids[last.loss_mask]) == right + "<|eot_id|>"
  assert last.loss_mask.sum() < example.loss_mask.sum()


def test_sft_conversation_errors(proc):
  with pytest.raises(ValueError, match="needs at least one assistant turn"):
    proc.encode_sft((core.Turn("user", "hi"),))
  with pytest.raises(ValueError, match="must start with a user"):
    proc.encode_sft((core.Turn("assistant", "hi"),))
  text_only = processor_lib.Processor.create("")
  with pytest.raises(ValueError, match="processor is text-only"):
    text_only.encode_prompt(gp.reset(0, GP_VL)[1])


def test_a_checkpoint_directory_brings_its_own_template_and_image_processor(proc, tmp_path):
  hf = _hf_processor(proc)
  hf.chat_template = proc.tokenizer.chat_template.replace("Cutting Knowledge", "Knowledge cut")
  hf.image_processor = images.image_processor(28, 2)
  hf.save_pretrained(tmp_path)
  loaded = processor_lib.Processor.create(tmp_path, image_size=56, max_tiles=4)
  assert (loaded.image_size, loaded.max_tiles) == (28, 2)
  assert loaded.image_processor.size.height == 28 and loaded.image_processor.max_image_tiles == 2
  assert "Knowledge cut Date: December 2023" in chat.render(loaded.tokenizer, gp.reset(0, GP_L)[1])
