"""LaTeX output: every character reaches pdflatex as ASCII, spelled from its Unicode name, or is refused by name."""

from __future__ import annotations

import pytest

from analysis import render
from analysis.latex import latex_escape
from analysis.selection import CONFIG_SYMBOLS
from trainables.spec.losses import HYPERPARAMETERS

# How the tables' characters were spelled before the spelling was derived; they stay so.
KNOWN = {
    "±": r"$\pm$", "−": r"$-$", "×": r"$\times$", "·": r"$\cdot$", "≥": r"$\geq$", "τ": r"$\tau$", "π": r"$\pi$",
    "β": r"$\beta$", "⁺": r"$^{+}$", "—": "---", "–": "--", "§": r"\S{}", "&": r"\&", "_": r"\_", "%": r"\%",
}


@pytest.mark.parametrize(("character", "expected"), list(KNOWN.items()))
def test_the_tables_characters_keep_their_spelling(character: str, expected: str) -> None:
    assert latex_escape(character) == expected


def test_every_catalog_symbol_is_spelled_in_ascii() -> None:
    symbols = {h.symbol for h in HYPERPARAMETERS.values()} | set(CONFIG_SYMBOLS.values())
    assert symbols and all(latex_escape(symbol).isascii() for symbol in symbols), {s: latex_escape(s) for s in symbols}


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [("λ", r"$\lambda$"), ("μ⁻", r"$\mu$$^{-}$"), ("α₂", r"$\alpha$$_{2}$"), ("Σ", r"$\Sigma$"), ("τ⁺", r"$\tau$$^{+}$")],
)
def test_a_new_symbol_is_spelled_from_its_unicode_name(symbol: str, expected: str) -> None:
    """A symbol no table used before (a new hyperparameter's) needs no edit of the spelling."""
    assert latex_escape(symbol) == expected


def test_a_character_without_a_spelling_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'☃' \(SNOWMAN\) has no LaTeX spelling"):
        latex_escape("a ☃ b")


@pytest.mark.parametrize(("low", "high"), [(0x0391, 0x03C9), (0x2070, 0x209C), (0x00A0, 0x00FF)])
def test_no_character_reaches_pdflatex_unspelled(low: int, high: int) -> None:
    """Over the Greek letters, the super- and subscripts and Latin-1: ASCII out, or a ValueError; never the character."""
    for code in range(low, high + 1):
        try:
            out = latex_escape(chr(code))
        except ValueError:
            continue
        assert out.isascii(), (hex(code), out)


def test_render_uses_the_derived_spelling() -> None:
    assert render.latex_escape is latex_escape
