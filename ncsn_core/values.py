"""Language-neutral value objects shared by the DSL and the components.

The DSL turns text into these; components receive them. They are frozen and hashable so a
``RunSpec`` that holds them is hashable too, and each has a canonical JSON form.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import attrs


class _Auto:
    """The ``auto`` keyword: a value the compiler computes (NCSNv2 Techniques 1, 2, 4)."""

    _inst: _Auto | None = None

    def __new__(cls) -> _Auto:
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "auto"

    def __reduce__(self) -> str:
        return "AUTO"


AUTO = _Auto()


@attrs.frozen
class Ident:
    """A bare name used as a value (``dequantize = uniform``)."""

    name: str


@attrs.frozen
class Call:
    """``name(key = value, ...)``; params are sorted ``(key, value)`` pairs once checked."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


_BINOPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
}


@attrs.frozen
class Expr:
    """An arithmetic expression tree over named symbols.

    Nodes: ``("num", v)``, ``("sym", name)``, ``("neg", a)``, ``(op, a, b)`` with op in
    ``+ - * / **``, and ``("call", fname, a)`` for ``sqrt``, ``exp``, ``log``.
    Evaluation works on floats and on torch tensors alike (``sigma`` may be a tensor).
    """

    tree: tuple

    def symbols(self) -> set[str]:
        out: set[str] = set()

        def walk(n: tuple) -> None:
            if n[0] == "sym":
                out.add(n[1])
            elif n[0] == "num":
                return
            else:
                for c in n[1:]:
                    if isinstance(c, tuple):
                        walk(c)

        walk(self.tree)
        return out

    def evaluate(self, **env: Any) -> Any:
        def ev(n: tuple) -> Any:
            tag = n[0]
            if tag == "num":
                return n[1]
            if tag == "sym":
                return env[n[1]]
            if tag == "neg":
                return -ev(n[1])
            if tag == "call":
                x = ev(n[2])
                if n[1] == "sqrt":
                    return x**0.5
                return _apply(n[1], x)
            return _BINOPS[tag](ev(n[1]), ev(n[2]))

        return ev(self.tree)

    def text(self) -> str:
        """Canonical text, minimally parenthesised (used by ``repro fmt`` and hashing)."""
        return _expr_text(self.tree, 0)


# The one precedence table of the language's arithmetic (the parser's rule names map onto it).
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "**": 4}
ATOM = 9  # the precedence of a number, a name, a call or a parenthesised expression
OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}  # grammar rule → operator
FUNCTIONS = ("sqrt", "exp", "log")


def _expr_text(n: tuple, parent: int, right: bool = False) -> str:
    tag = n[0]
    if tag == "num":
        return format_number(n[1])
    if tag == "sym":
        return n[1]
    if tag == "call":
        return f"{n[1]}({_expr_text(n[2], 0)})"
    if tag == "neg":
        s = "-" + _expr_text(n[1], PRECEDENCE["neg"])
        return f"({s})" if parent > PRECEDENCE["neg"] else s
    p = PRECEDENCE[tag]
    if tag == "**":  # right-associative
        s = f"{_expr_text(n[1], p + 1)} ** {_expr_text(n[2], p, True)}"
    else:
        s = f"{_expr_text(n[1], p)} {tag} {_expr_text(n[2], p + 1, True)}"
    return f"({s})" if p < parent or (right and p == parent and tag != "**") else s


def _apply(fname: str, x: Any) -> Any:
    """sqrt/exp/log of a Python number (math) or of a tensor (its own method: no torch import here)."""
    if isinstance(x, (int, float)):
        return getattr(math, fname)(x)
    return getattr(x, fname)()


def format_number(v: float | int) -> str:
    """Shortest text that reads back as the same number (``1e-3``, ``200000``, ``0.5``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if v.is_integer() and abs(v) < 1e15:
        return f"{v:.1f}"
    r = repr(v)
    if "e" in r:
        mant, exp = r.split("e")
        return f"{mant}e{int(exp)}"
    return r


def quote(s: str) -> str:
    """A string literal of the language that reads back as ``s``."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def value_text(v: Any) -> str:
    """The one printer of values as the language spells them (``repro compile``, the docs,
    diagnostics, ``--set`` provenance): expressions print as source text."""
    if v is AUTO:
        return "auto"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return format_number(v)
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, Ident):
        return v.name
    if isinstance(v, Call):
        return v.name + (
            "(" + ", ".join(f"{k} = {value_text(x)}" for k, x in v.params) + ")" if v.params else ""
        )
    if isinstance(v, Expr):
        return v.text()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    return str(v)


def to_json(value: Any) -> Any:
    """Canonical JSON-able form of a checked value (used for spec hashing)."""
    if value is AUTO:
        return {"auto": True}
    if isinstance(value, Ident):
        return value.name
    if isinstance(value, Call):
        return {"call": value.name, "params": {k: to_json(v) for k, v in value.params}}
    if isinstance(value, Expr):
        return {"expr": value.text()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in sorted(value.items())}
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value
