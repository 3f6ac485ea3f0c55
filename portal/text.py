"""What text the portal accepts: one set of rules for the forms, the API and the importer.

The validators go on model fields, so a ModelForm, a ModelSerializer and the configuration
importer (which cleans each value with its model field) refuse the same value with the same
sentence. ``json_problem`` checks parsed JSON (API bodies, imported configurations) before any
field sees it.
"""

import re

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

# A NUL ends a path for the operating system and is refused by PostgreSQL in any text; other
# control characters corrupt the files Orthanc reads. Lone surrogates cannot be encoded at all.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab and line breaks allowed
_SURROGATE = re.compile(r"[\ud800-\udfff]")

SEARCH_MAX_LENGTH = 64
JSON_MAX_DEPTH = 32


def _shown(char):
    return f"U+{ord(char):04X}"


@deconstructible
class PlainText:
    """No control characters (tab and line breaks allowed when ``multiline``), no lone surrogates."""

    def __init__(self, multiline=False):
        self.multiline = multiline

    def __call__(self, value):
        if not isinstance(value, str):
            return
        surrogate = _SURROGATE.search(value)
        if surrogate:
            raise ValidationError(
                f"Not valid text: a lone surrogate ({_shown(surrogate.group())}) cannot be stored.", code="surrogate"
            )
        control = (_CONTROL_MULTILINE if self.multiline else _CONTROL).search(value)
        if control:
            allowed = " (tab and line breaks are)" if self.multiline else ""
            raise ValidationError(
                f"Control characters are not allowed{allowed}: found {_shown(control.group())}.", code="control"
            )

    def __eq__(self, other):
        return isinstance(other, PlainText) and other.multiline == self.multiline


single_line = PlainText()
multi_line = PlainText(multiline=True)


def search_problem(value: str) -> str:
    """The sentence refusing a search string, or "" when it is fine."""
    if len(value) > SEARCH_MAX_LENGTH:
        return f"A search is at most {SEARCH_MAX_LENGTH} characters; this has {len(value)}."
    return ""


def json_problem(data, max_depth=JSON_MAX_DEPTH) -> tuple[str, str] | None:
    """(where, what) of the first value of parsed JSON that no field could take: nesting deeper
    than ``max_depth``, a NUL or a lone surrogate in a key or a string. None when all is fine.
    Iterative, so the check itself cannot overflow the stack."""
    stack = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > max_depth:
            return where or "(top)", f"Nested too deeply: at most {max_depth} levels."
        if isinstance(value, dict):
            items = list(value.items())
        elif isinstance(value, list):
            items = [(str(i), v) for i, v in enumerate(value)]
        else:
            items = []
            if isinstance(value, str):
                problem = _text_problem(value)
                if problem:
                    return where or "(top)", problem
        for key, child in items:
            problem = _text_problem(key)
            if problem:
                return where or "(top)", f"In a key: {problem}"
            path = f"{where}.{key[:64]}" if where else key[:64]
            stack.append((child, path, depth + 1))
    return None


def _text_problem(value: str) -> str:
    surrogate = _SURROGATE.search(value)
    if surrogate:
        return f"Not valid text: a lone surrogate ({_shown(surrogate.group())}) cannot be stored."
    if "\x00" in value:
        return "A NUL character (U+0000) is not allowed."
    return ""
