"""Builds the embedded tokenizer of the tiny presets (`jaxrl_gen/assets/tiny_tokenizer/`).

    python -m jaxrl_gen.text.build_tiny_tokenizer [--out DIR]

A byte-level BPE trained with `tokenizers` on task text (GeneralPoints prompts, expert answers
and verifier feedback over many dealt hands of every variant; the V-IRL prompt and answer
templates; the chat template's own words), with Llama-3's pre-tokenizer split and special
tokens, saved as a Hugging Face tokenizer directory with the Llama-3.2-Vision chat template.
Ids: first the byte-level BPE (256 bytes and the merges the corpus supports, about 970), then
the Llama-3 special tokens in Llama-3's order, then reserved special tokens up to id 2047 (as
Llama-3 fills its special block), and `<|image|>` = 2048: outside the 2048-row lm_head, in the
model's extra embedding rows, as Mllama's 128256. The build is deterministic: the same corpus
gives the same files, which a test checks against the shipped copy.
"""

from __future__ import annotations

import argparse
import os
import pathlib

import numpy as np

from jaxrl_gen.data import experts
from jaxrl_gen.text import chat

VOCAB_SIZE = 2048  # the lm_head rows of the tiny presets
# Llama-3's named special tokens in their order (128000..128010).
SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
)
IMAGE_TOKEN = "<|image|>"
MIN_RESERVED = 5  # at least Llama-3's first reserved tokens after <|python_tag|>
MAX_BPE = VOCAB_SIZE - len(SPECIAL_TOKENS) - MIN_RESERVED
# Llama-3's pre-tokenizer split (tiktoken's cl100k pattern): contractions, words with one
# leading non-letter, numbers in groups of up to three digits, punctuation runs, newlines.
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
HANDS_PER_VARIANT = 400
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "assets" / "tiny_tokenizer"

# V-IRL text (reference.md §3.6): the prompt templates and answer fields, filled with the
# words the navigation task uses. The V-IRL environment is not needed to learn its bytes.
_VIRL_PROMPT = (
    "\n[Task Description]\nYou are an expert in navigation. You will receive a sequence of "
    "instructions to follow{vl}. You\nare also provided with your observation and action history"
    " in text. Your goal is to first analyze the instruction and identify the next sentence to "
    "be executed. \nThen, you need to provide the action to be taken based on the current "
    "observation and instruction.\n\n[Instruction]\n{instructions}\n\n{obs_format}"
    "[Action space]\n{action_space}\n\n[Observations and actions sequence]\n{history}\n\n"
    "[Output]\n{{\n  \"current observation\": latest observation from the{grid} observation "
    "sequence,\n  \"current instruction\": analyze the full instruction and identify the sentence"
    " to be executed,\n  \"action\": the action to be taken chosen from the action space,\n}}\n")
_VIRL_OBS_FORMAT = (
    "[Observation format]\nYou observe a 2x2 grid of streetview images with the following "
    "headings:\n[front, right\n back, left]\nYou need to identify if any of the landmarks in the "
    "instruction are visible in the street view grid.\n\n")
_COMPASS = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
_RELATIVE = ("left", "right", "slightly left", "slightly right")
_ACTION_SPACE = (
    '"forward()": indicates moving forward one step\n"turn_direction(x)": indicates adjust the '
    "ego agent direction towards x direction. x could be any following {x}\n\"stop()\": "
    "indicates the navigation is finished.")
_PLACES = ("The Dutch", "Shuka", "Hotel 32One", "Joe's Pizza", "Central Park", "Starbucks",
           "Bank of America", "Chase Bank", "Whole Foods Market", "Madison Square Garden")
_SIDES = ("front", "right front", "right", "right behind", "behind", "left behind", "left",
          "left front")
_VIRL_ANSWER = ('\n{{\n  "current observation": "{obs}",\n  "current instruction": "{sentence}",'
                '\n  "action": "{action}",\n}}')
_VIRL_FEEDBACK = ("you make incorrect action. Please avoid this action and try again in the same "
                  "format:", "you are not at any intersection. Please avoid this observation and "
                  "try again in the same format:")


def gp_corpus(hands_per_variant: int = HANDS_PER_VARIANT) -> list[str]:
  """GeneralPoints prompts, expert answers and verifier feedback over dealt hands of every
  variant (GP-L/VL, face cards 10 or 11/12/13, ood, targets 24 and others)."""
  from jaxrl_gen.envs import core
  from jaxrl_gen.envs import general_points as gp

  texts = []
  variants = [dict(language_only=lo, face_cards_as_10=f10, ood=ood, target=target)
              for lo in (True, False) for f10, ood in ((True, False), (False, True))
              for target in (24, 24, 24, 10, 36)]
  for v, variant in enumerate(variants):
    params = gp.EnvParams(**variant)
    rng = np.random.default_rng([v, 7])
    for _ in range(hands_per_variant // 5 if variant["target"] != 24 else hands_per_variant):
      hand = gp.deal(rng, params)
      answer = gp.expert_answer(hand, params, rng)
      texts += [gp.prompt(hand, params), answer]
      for wrong in experts.gp_wrong_answers(answer, hand, rng):
        texts.append(wrong)
        texts.append(core.FEEDBACK_PREFIX + gp.verify(wrong, hand, params)[1])
  return texts


def virl_corpus(count: int = 300) -> list[str]:
  """V-IRL prompts (L and VL, absolute and relative actions) and answers on synthetic routes."""
  rng = np.random.default_rng(12)
  texts = []
  for k in range(count):
    relative = k % 2 == 1
    words = _RELATIVE if relative else _COMPASS
    sentences, history = [], []
    for m in range(int(rng.integers(2, 5))):
      turn = _RELATIVE[int(rng.integers(4))]
      heading = _COMPASS[int(rng.integers(8))]
      sentences.append(f"{'First, turn' if m == 0 else 'Turn'} {turn} to face {heading}.")
      name, side = _PLACES[int(rng.integers(len(_PLACES)))], _SIDES[int(rng.integers(8))]
      place = f"{name} is on your {side}"
      sentences.append("Move forward until you reach next intersection." if rng.random() < 0.3
                       else f"Move forward until you reach next intersection where {place}.")
    sentences[-1] = f"Move forward until you reach destination where {place}."
    actions = ["forward()", "stop()"] + [f"turn_direction({w})" for w in words]
    for j in range(int(rng.integers(1, 6))):
      obs = (f"{place}; You observe an intersection" if rng.random() < 0.4
             else "No landmarks nearby; ")
      history.append(f"O_{j + 1}: {obs}\nA_{j + 1}: {actions[int(rng.integers(len(actions)))]}")
    vl = k % 4 >= 2
    texts.append(_VIRL_PROMPT.format(
        vl=" while observing your surrounding stree tviews" if vl else "",
        instructions="".join(f"{i + 1}. {s}\n" for i, s in enumerate(sentences)),
        obs_format=_VIRL_OBS_FORMAT if vl else "",
        action_space=_ACTION_SPACE.format(x=list(words)),
        history="\n".join(history) + f"\nO_{len(history) + 1}: "
        + ("You observe an image of 4 views; " if vl else "No landmarks nearby; ") + "\nA_"
        + f"{len(history) + 1}: ", grid=" street view grid" if vl else ""))
    answer = _VIRL_ANSWER.format(obs=history[-1].split("\n")[0][len("O_1: "):].strip(),
                                 sentence=sentences[int(rng.integers(len(sentences)))],
                                 action=actions[int(rng.integers(len(actions)))])
    texts += [answer, "You failed this trial because "
              + _VIRL_FEEDBACK[int(rng.integers(2))] + answer + "."]
  return texts


def chat_corpus() -> list[str]:
  """The chat template's own words, as it renders them between special tokens."""
  return ["system", "user", "assistant", "\n\n",
          f"Cutting Knowledge Date: December 2023\nToday Date: {chat.DEFAULT_DATE}\n\n"] * 50


def corpus() -> list[str]:
  return gp_corpus() + virl_corpus() + chat_corpus()


def train(texts: list[str]):
  """The byte-level BPE (a `tokenizers.Tokenizer`) with the special tokens appended."""
  from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
  ])
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=MAX_BPE, min_frequency=2, show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tokenizer.train_from_iterator(texts, trainer)
  reserved = [f"<|reserved_special_token_{i}|>" for i in
              range(3, VOCAB_SIZE - tokenizer.get_vocab_size() - len(SPECIAL_TOKENS) + 3)]
  tokenizer.add_special_tokens(list(SPECIAL_TOKENS) + reserved + [IMAGE_TOKEN])
  if tokenizer.token_to_id(IMAGE_TOKEN) != VOCAB_SIZE:
    raise AssertionError(f"{IMAGE_TOKEN} got id {tokenizer.token_to_id(IMAGE_TOKEN)}")
  bos = SPECIAL_TOKENS[0]
  # As Llama-3: `add_special_tokens=True` prepends <|begin_of_text|> (we always pass False).
  tokenizer.post_processor = processors.TemplateProcessing(
      single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
      special_tokens=[(bos, tokenizer.token_to_id(bos))])
  return tokenizer


def build(out: str | os.PathLike = DEFAULT_OUT) -> pathlib.Path:
  """Trains on the corpus and saves the Hugging Face tokenizer directory to `out`."""
  from transformers import PreTrainedTokenizerFast

  tokenizer = PreTrainedTokenizerFast(
      tokenizer_object=train(corpus()), bos_token=SPECIAL_TOKENS[0], eos_token="<|eot_id|>",
      pad_token="<|finetune_right_pad_id|>", chat_template=chat.LLAMA32_VISION_TEMPLATE,
      model_max_length=131072, clean_up_tokenization_spaces=False,
      extra_special_tokens={"image_token": IMAGE_TOKEN})
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  tokenizer.save_pretrained(out)
  return out


def main(argv: list[str] | None = None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=str(DEFAULT_OUT), help="output directory")
  args = parser.parse_args(argv)
  path = build(args.out)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
