"""Text spelled for pdflatex: LaTeX's special characters escaped, every other character spelled from its Unicode name.

No list of the catalog's symbols is kept here: a Greek letter is spelled from its Unicode name
(τ, GREEK SMALL LETTER TAU, is ``$\\tau$``), a superscript or subscript from its decomposition (τ⁺
is ``$\\tau$$^{+}$``), so a symbol a new loss hyperparameter brings is spelled without an edit.
A few typographic characters have fixed spellings; a character with none is refused, naming it,
rather than passed to pdflatex, which would stop on it.
"""

from __future__ import annotations

import unicodedata

SPECIALS: dict[str, str] = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
TEXT: dict[str, str] = {"—": "---", "–": "--", "§": r"\S{}", "“": "``", "”": "''", "‘": "`", "’": "'"}
MATH: dict[str, str] = {"±": r"\pm", "−": "-", "×": r"\times", "·": r"\cdot", "≥": r"\geq", "≤": r"\leq", "√": r"\surd"}
# LaTeX's Greek letter commands (math mode), by the word of the letter's Unicode name.
GREEK_SMALL = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi chi psi omega"
).split()
GREEK_CAPITAL = "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
UNICODE_SPELLING = {"lamda": "lambda"}  # Unicode names the letter LAMDA
SCRIPTS = {"<super>": "^", "<sub>": "_"}


def latex_escape(text: str) -> str:
    """``text`` for pdflatex: specials escaped, every non-ASCII character spelled.

    Raises:
        ValueError: naming a character that has no spelling here.
    """
    return "".join(spelled(character) for character in text)


def spelled(character: str) -> str:
    """One character for pdflatex (in text mode)."""
    if character.isascii():
        return SPECIALS.get(character, character)
    if character in TEXT:
        return TEXT[character]
    math = math_spelling(character)
    if math is None:
        name = unicodedata.name(character, f"U+{ord(character):04X}")
        raise ValueError(f"{character!r} ({name}) has no LaTeX spelling; add one to analysis/latex.py")
    return f"${math}$"


def math_spelling(character: str) -> str | None:
    """The character in math mode, or None: a letter or digit as is, a symbol, a Greek letter by its
    Unicode name, a superscript or subscript by its decomposition."""
    if character.isascii():
        return character if character.isalnum() or character in "+-=()" else None
    if character in MATH:
        return MATH[character]
    words = unicodedata.name(character, "").split()
    if words[:2] == ["GREEK", "SMALL"] and len(words) == 4 and words[2] == "LETTER":
        letter = UNICODE_SPELLING.get(words[3].lower(), words[3].lower())
        return f"\\{letter}" if letter in GREEK_SMALL else None
    if words[:2] == ["GREEK", "CAPITAL"] and len(words) == 4 and words[2] == "LETTER":
        letter = UNICODE_SPELLING.get(words[3].lower(), words[3].lower()).capitalize()
        return f"\\{letter}" if letter in GREEK_CAPITAL else None
    kind, _, code = unicodedata.decomposition(character).partition(" ")
    if kind in SCRIPTS and code and " " not in code:
        inner = math_spelling(chr(int(code, 16)))
        return f"{SCRIPTS[kind]}{{{inner}}}" if inner is not None else None
    return None
