"""Source lines as the parser counts them: the one line splitter of the parser's notes and every diagnostic.

Lark counts lines by ``"\\n"`` alone (its columns count every other character, a form feed,
a bare CR or U+2028 included), so positions (line, col) name lines split on ``"\\n"``, never
:meth:`str.splitlines` (which also breaks at FF, VT, CR, U+001C-1E, U+0085, U+2028/2029).
A quoted line shows each such character as one space, so it stays one line on a terminal
and its caret stays under the column named.
"""

from __future__ import annotations

# Every character str.splitlines breaks at, except "\n": shown as one space in a quote.
OTHER_BREAKS = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_SHOWN = str.maketrans(dict.fromkeys(OTHER_BREAKS, " "))


def source_lines(text: str) -> list[str]:
    """``text`` split where the parser counts a new line ("\\n"; a CRLF's CR stays at the end
    of its line, after every column a position names); no empty last line after a final "\\n"."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def line_at(text: str, line: int) -> str | None:
    """Line ``line`` (1-based, as in a position) of ``text``, or None past its end."""
    lines = source_lines(text)
    return lines[line - 1] if 1 <= line <= len(lines) else None


def shown(line: str) -> str:
    """A source line as a diagnostic quotes it: one character per column (a tab and every
    line-breaking character other than "\\n" as one space), a CRLF's CR dropped."""
    if line.endswith("\r"):
        line = line[:-1]
    return line.expandtabs(1).translate(_SHOWN)
