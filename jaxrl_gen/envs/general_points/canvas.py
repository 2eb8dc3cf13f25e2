"""The GP-VL observation: four cards on a casino-green canvas (`reference.md` §2.4)."""

from __future__ import annotations

import functools

from PIL import Image, ImageDraw, ImageFont

from jaxrl_gen.envs.general_points import faces
from jaxrl_gen.envs.general_points.cards import Hand
from jaxrl_gen.envs.general_points.params import EnvParams, asset_path

BACKGROUND = "#35654d"
BACKGROUND_RGB = (0x35, 0x65, 0x4D)
LABEL = "Formula:"
LABEL_POSITION = (10, 840)
LABEL_SIZE = 64


def card_size(resolution: int) -> tuple[int, int]:
  """(width, height) of a card: a quarter of the canvas less 10%, in a 5:7 ratio."""
  width = int(resolution / 4 * 0.9)
  return width, int(width * 7 / 5)


def card_positions(resolution: int) -> list[tuple[int, int]]:
  """The top-left corner of each of the four cards."""
  width, height = card_size(resolution)
  top = int((resolution - height) / 2)
  return [(5 + int(i * width * 1.1), top) for i in range(4)]


def render(hand: Hand, params: EnvParams) -> Image.Image:
  """The observation image (RGB, resolution x resolution). With `card_assets`, the cards are
  the folder's PNGs resized and pasted without a mask, as the reference does (their transparent
  corners show black); otherwise our own drawn faces."""
  canvas = Image.new("RGB", (params.resolution, params.resolution), BACKGROUND)
  width, height = card_size(params.resolution)
  for card, position in zip(hand.cards, card_positions(params.resolution)):
    if params.card_assets:
      face = _asset(params.card_assets, card, width, height)
    else:
      face = faces.card_face(card, width, height, BACKGROUND_RGB)
    canvas.paste(face, position)
  if params.formula_label:
    # The paper-era label; the formula line under it (at y=960) was always empty.
    ImageDraw.Draw(canvas).text(LABEL_POSITION, LABEL, fill="white", font=_label_font())
  return canvas


@functools.lru_cache(maxsize=128)
def _asset(folder: str, card: str, width: int, height: int) -> Image.Image:
  with Image.open(asset_path(folder, card)) as image:
    return image.resize((width, height))


@functools.lru_cache(maxsize=1)
def _label_font():
  try:
    return ImageFont.truetype("DejaVuSans.ttf", LABEL_SIZE)
  except OSError:
    return ImageFont.load_default(size=LABEL_SIZE)
