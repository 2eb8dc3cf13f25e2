"""The embedded tiny tokenizer: its ids, special tokens, byte-level coverage and its build."""

import filecmp
import sys

import pytest

from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.text import build_tiny_tokenizer, tokenizer as tokenizer_lib

LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
                   "<|finetune_right_pad_id|>", "<|reserved_special_token_0|>")


@pytest.fixture(scope="module")
def tok():
  return tokenizer_lib.load("")


def test_vocabulary_is_2048_plus_the_image_token(tok):
  vocab = tok.get_vocab()
  assert len(vocab) == 2049
  assert sorted(vocab.values()) == list(range(2049))
  assert vocab["<|image|>"] == 2048
  for token in LLAMA3_SPECIALS:
    assert vocab[token] < 2048, token
  # Llama-3's order within the special block.
  assert [vocab[t] - vocab["<|begin_of_text|>"] for t in
          ("<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
           "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>")] == [
               1, 4, 6, 7, 8, 9, 10]
  ids = tokenizer_lib.special_ids(tok)
  assert ids.pad == vocab["<|finetune_right_pad_id|>"] and ids.eot == vocab["<|eot_id|>"]
  assert ids.image == 2048 and set(ids.stop) == {vocab[t] for t in
                                                  ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")}


@pytest.mark.parametrize("text", [
    "héllo wörld ✓ 24点 🃏 \t\r\n ~`", "(10-4)*(3+1)=24", "\x00\x7f", "ąčęėįšųūž"])
def test_any_text_round_trips(tok, text):
  ids = tok(text, add_special_tokens=False)["input_ids"]
  assert max(ids) < 2048
  assert tok.decode(ids) == text


def test_task_text_is_compact_and_special_tokens_are_single_ids(tok):
  hand = gp.deal(5, gp.EnvParams())
  prompt = gp.prompt(hand, gp.EnvParams())
  ids = tok(prompt, add_special_tokens=False)["input_ids"]
  assert tok.decode(ids) == prompt
  assert len(ids) < len(prompt) / 3  # trained on this text: long pieces are single tokens
  text = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|image|>"
  ids = tok(text, add_special_tokens=False)["input_ids"]
  assert tok.convert_ids_to_tokens(ids)[:3] == [
      "<|begin_of_text|>", "<|start_header_id|>", "user"]
  assert ids[-2:] == [tok.convert_tokens_to_ids("<|eot_id|>"), 2048]
  # add_special_tokens=True prepends <|begin_of_text|>, as Llama-3's tokenizer does.
  assert tok("a")["input_ids"][0] == tok.convert_tokens_to_ids("<|begin_of_text|>")


def test_build_is_deterministic_and_matches_the_shipped_files(tmp_path):
  build_tiny_tokenizer.build(tmp_path)
  shipped = tokenizer_lib.EMBEDDED
  names = sorted(p.name for p in shipped.iterdir())
  assert names == sorted(p.name for p in tmp_path.iterdir())
  assert "tokenizer.json" in names and "chat_template.jinja" in names
  match, mismatch, errors = filecmp.cmpfiles(shipped, tmp_path, names, shallow=False)
  assert not mismatch and not errors


def test_loading_does_not_import_torch(tmp_path):
  import subprocess

  code = ("import sys; from jaxrl_gen.text import tokenizer as t; t.load(''); "
          "assert 'torch' not in sys.modules, 'torch imported'")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=tokenizer_lib.EMBEDDED.parents[2])


def test_bad_tokenizer_directory_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a directory with tokenizer.json"):
    tokenizer_lib.load(tmp_path)
