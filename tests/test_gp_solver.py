"""The expert solver: the reference's family of formulas, checked against independent searches."""

import ast
import itertools
import re
from fractions import Fraction

import numpy as np
import pytest

from jaxrl_gen.envs import general_points as gp

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def exact_value(text: str) -> Fraction:
  """Exact value of a formula through Python's own parser (independent of ours), no eval."""
  def walk(node):
    if isinstance(node, ast.BinOp):
      return _OPS[type(node.op)](walk(node.left), walk(node.right))
    assert isinstance(node, ast.Constant) and isinstance(node.value, int), ast.dump(node)
    return Fraction(node.value)
  return walk(ast.parse(text, mode="eval").body)


def solvable(numbers, target=24) -> bool:
  """Any binary tree over the numbers, any order, exact arithmetic."""
  def search(values):
    if len(values) == 1:
      return values[0] == target
    for i, j in itertools.permutations(range(len(values)), 2):
      a, b, rest = values[i], values[j], [v for k, v in enumerate(values) if k not in (i, j)]
      results = [a + b, a - b, a * b] + ([a / b] if b else [])
      if any(search(rest + [r]) for r in results):
        return True
    return False
  return search([Fraction(n) for n in numbers])


# The seven bracket layouts of reference.md §2.3, written out independently of the solver.
LAYOUTS = ["a o b o c o d", "( a o b ) o c o d", "( a o b o c ) o d", "a o ( b o c ) o d",
           "a o ( b o c o d )", "a o b o ( c o d )", "( a o b ) o ( c o d )"]


def family(numbers, target=24):
  """The reference family by brute force over strings: permutations x operators x layouts."""
  found = []
  for perm in sorted(set(itertools.permutations(numbers))):
    for ops in itertools.product("+-*/", repeat=3):
      for layout in LAYOUTS:
        leaves, signs, out = iter(perm), iter(ops), []
        for part in layout.split():
          out.append(str(next(leaves)) if part in "abcd" else next(signs) if part == "o" else part)
        text = "".join(out)
        try:
          if exact_value(text) == target:
            found.append(text)
        except ZeroDivisionError:
          pass
  return found


def test_known_hands():
  assert gp.solve([3, 3, 8, 8]) == ["8/(3-8/3)"]
  assert "(10-4)*(3+1)" in gp.solve([10, 4, 3, 1])
  assert gp.solve([1, 1, 1, 1]) == []
  assert gp.solve([13, 13, 13, 13]) == []


def test_random_hands_agree_with_an_unrestricted_search():
  rng = np.random.default_rng(0)
  hands = [tuple(int(v) for v in rng.integers(1, 14, size=4)) for _ in range(150)]
  hands += [tuple(min(v, 10) for v in hand) for hand in hands[:50]]
  for numbers in hands:
    formulas = gp.solve(numbers)
    assert bool(formulas) == solvable(numbers), numbers
    for text in formulas:
      assert " " not in text and exact_value(text) == 24, (numbers, text)
      assert sorted(int(n) for n in re.findall(r"[0-9]+", text)) == sorted(numbers)


def test_exactly_the_reference_family_in_a_deterministic_order():
  rng = np.random.default_rng(1)
  for _ in range(12):
    numbers = tuple(int(v) for v in rng.integers(1, 14, size=4))
    assert gp.solve(numbers) == family(numbers), numbers
  assert gp.solve([6, 4, 1, 1], target=10) == family((6, 4, 1, 1), target=10)


def test_memoised_by_multiset():
  assert gp.solve([4, 1, 10, 3]) == gp.solve([10, 4, 3, 1]) == gp.solve((1, 3, 4, 10))
  result = gp.solve([10, 4, 3, 1])
  result.append("mutating the returned list")
  assert "mutating the returned list" not in gp.solve([10, 4, 3, 1])


@pytest.mark.parametrize("bad", [[1, 2, 3], [1, 2, 3, 4, 5], [1, 2, 3, -4], [1, 2, 3, "4"],
                                 [1.0, 2, 3, 4]])
def test_rejects_anything_but_four_non_negative_integers(bad):
  with pytest.raises(ValueError, match="four non-negative integers"):
    gp.solve(bad)
