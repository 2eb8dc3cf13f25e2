"""The GP-VL observation image: layout, colours, determinism, and the reference's pixels."""

import hashlib
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxrl_gen.envs import general_points as gp

GREEN = (0x35, 0x65, 0x4D)
# reference.md §2.4: 270x378 cards at x = 5, 302, 599, 896 and y = 411 on a 1200 canvas.
WIDTH, HEIGHT, LEFTS, TOP = 270, 378, (5, 302, 599, 896), 411


def _reference_cards() -> pathlib.Path | None:
  here = pathlib.Path(__file__).resolve().parent.parent
  for folder in (here.parent / "shared" / "cards", pathlib.Path("/work/shared/cards")):
    if (folder / "SA.png").is_file():
      return folder
  return None


def pixels(hand, **kwargs) -> np.ndarray:
  return np.asarray(gp.render(hand, gp.EnvParams(language_only=False, **kwargs)))


def digest(array: np.ndarray) -> str:
  return hashlib.sha256(array.tobytes()).hexdigest()


def test_canvas_and_layout():
  image = pixels(gp.Hand.from_cards(("SA", "H9", "DK", "CT")))
  assert image.shape == (1200, 1200, 3) and image.dtype == np.uint8
  for y, x in ((0, 0), (1199, 1199), (TOP - 2, 600), (TOP + HEIGHT + 2, 600), (600, 2)):
    assert tuple(image[y, x]) == GREEN
  for left in LEFTS:
    assert tuple(image[TOP + HEIGHT // 10, left + WIDTH // 2]) == (255, 255, 255)  # card face
    assert tuple(image[TOP - 1, left + WIDTH // 2]) == GREEN  # just above the card
    assert tuple(image[600, left - 2]) == GREEN  # just left of the card
    assert tuple(image[600, left + WIDTH + 1]) == GREEN  # just right of it
  small = pixels(gp.Hand.from_cards(("SA", "H9", "DK", "CT")), resolution=400)
  assert small.shape == (400, 400, 3)


def _card(image, i):
  return image[TOP:TOP + HEIGHT, LEFTS[i]:LEFTS[i] + WIDTH].reshape(-1, 3).astype(int)


def test_suit_colours():
  image = pixels(gp.Hand.from_cards(("H7", "D7", "S7", "C7")))
  for i, red in enumerate((True, True, False, False)):
    card = _card(image, i)
    reds = np.sum((card[:, 0] > 150) & (card[:, 1] < 80) & (card[:, 2] < 80))
    darks = np.sum(card.max(axis=1) < 60)
    if red:
      assert reds > 2000 and darks == 0
    else:
      assert darks > 2000 and reds == 0


def test_each_rank_draws_something_different():
  faces = {}
  for rank in "A23456789TJQK":
    card = _card(pixels(gp.Hand.from_cards(("S" + rank, "S2", "S3", "S4"))), 0)
    faces[rank] = digest(card)
  assert len(set(faces.values())) == 13


def test_deterministic():
  hand = gp.Hand.from_cards(("SQ", "H5", "D6", "C9"))
  assert digest(pixels(hand)) == digest(pixels(hand))
  assert digest(pixels(hand)) != digest(pixels(gp.Hand.from_cards(("SQ", "H5", "D6", "C8"))))
  state, obs = gp.reset(5, gp.EnvParams(language_only=False, color="black"))
  again, obs_again = gp.reset(5, gp.EnvParams(language_only=False, color="black"))
  assert digest(np.asarray(obs[0].image)) == digest(np.asarray(obs_again[0].image))


def test_formula_label():
  hand = gp.Hand.from_cards(("SQ", "H5", "D6", "C9"))
  plain, labelled = pixels(hand), pixels(hand, formula_label=True)
  region = (slice(840, 920), slice(10, 300))
  assert (plain[region] == GREEN).all()
  assert np.sum(labelled[region].min(axis=2) > 200) > 1000  # white text
  changed = np.argwhere((plain != labelled).any(axis=2))
  assert changed[:, 0].min() >= 840 and changed[:, 1].min() >= 10


def test_reference_card_assets_pixel_exact():
  folder = _reference_cards()
  if folder is None:
    pytest.skip("the reference card faces are not beside this checkout (shared/cards)")
  hand = gp.Hand.from_cards(("SK", "DT", "HA", "C5"))
  expected = Image.new("RGB", (1200, 1200), "#35654d")
  for card, left in zip(hand.cards, LEFTS):
    with Image.open(folder / f"{card}.png") as face:
      expected.paste(face.resize((WIDTH, HEIGHT)), (left, TOP))
  got = pixels(hand, card_assets=str(folder))
  assert np.array_equal(got, np.asarray(expected))
  assert tuple(got[TOP, LEFTS[0]]) == (0, 0, 0)  # transparent corners show black, as reference


def test_card_assets_must_exist(tmp_path):
  with pytest.raises(ValueError, match=r"card_assets=.*missing HA.png"):
    gp.EnvParams(card_assets=str(tmp_path))
