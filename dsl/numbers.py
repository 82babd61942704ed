"""Number literals and constant folding of the language: `50k`, `1e-3`, `2 ** 10` folded within float64 bounds."""

from __future__ import annotations

import math
import re
from typing import Any

from dsl.ast import Pos
from dsl.errors import error
from ncsn_core.values import Call, Expr

MAX_FLOAT = 1.7976931348623157e308  # numbers folded or written must fit in a float64
MAX_INT_DIGITS = 4300  # larger integer results are refused, not computed (9 ** 9 ** 9)
_INT_LIMIT = 10**MAX_INT_DIGITS

_SUFFIX = {"k": 1_000, "M": 1_000_000}


def parse_number(text: str) -> int | float:
    """``200_000`` → 200000, ``50k`` → 50000, ``1e-3`` → 0.001, ``2.5`` → 2.5."""
    t = text.replace("_", "")
    mult = 1
    if t and t[-1] in _SUFFIX:
        mult = _SUFFIX[t[-1]]
        t = t[:-1]
    if re.fullmatch(r"\d+", t):
        return int(t) * mult
    v = float(t) * mult
    if mult != 1 and v.is_integer():
        return int(v)
    return v


def expr_or_const(tree: tuple) -> Any:
    """A constant expression tree folded to a number (an int when every part is one), else the
    :class:`Expr` itself."""
    e = Expr(tree)
    if e.symbols():
        return e
    # Fold with bounds first: `9 ** 9 ** 9` is never computed. What does not fold (too
    # large, 1 / 0, log(-1)) stays an expression: the resolver reports a number too
    # large (:func:`number_too_large`), the checker an expression where a number is due.
    if _fold_status(tree) != "ok":
        return e
    try:
        v = e.evaluate()
    except (ZeroDivisionError, OverflowError, ValueError):
        return e  # the checker reports it as an expression where a number is expected
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**53 and _all_int(tree) else v


def fold_expr(tree: tuple) -> Any:
    """An expression tree as a number when it is constant and folds within bounds, else an Expr
    (the resolver's references, once replaced by numbers, fold like written constants)."""
    return expr_or_const(tree)


def number_literal(text: str, pos: Pos) -> int | float:
    """A number literal, refused when it does not fit in a float64."""
    try:
        v = parse_number(text)
    except ValueError:  # more digits than int() converts
        v = math.inf
    if abs(v) > MAX_FLOAT:
        raise error(pos, f"number too large: {_short(text)} (the largest is about {MAX_FLOAT:.4g})")
    return v


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:10] + "..." + text[-6:] + f" ({len(text)} characters)"


def _too_large(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) >= _INT_LIMIT


class _TooLarge(Exception):
    pass


def number_too_large(value: Any) -> str | None:
    """Why ``value`` (a parsed value: number, list, call, expression) holds a constant
    expression whose result does not fit in a float64, or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, tuple):
            stack.extend(v)
        elif isinstance(v, Call):
            stack.extend(x for _, x in v.params)
        elif isinstance(v, Expr):
            trees = [v.tree]
            while trees:  # the largest constant parts of the expression
                t = trees.pop()
                if _symbolic(t):
                    trees.extend(c for c in t[1:] if isinstance(c, tuple))
                    continue
                st = _fold_status(t)
                if st == "huge":
                    return f"the value of this expression has more than {MAX_INT_DIGITS} digits"
                if st == "large":
                    return f"the value of this expression is beyond {MAX_FLOAT:.4g}"
    return None


def _symbolic(tree: tuple) -> bool:
    if tree[0] == "sym":
        return True
    return any(isinstance(c, tuple) and _symbolic(c) for c in tree[1:])


def _fold_status(tree: tuple) -> str:
    """ok (folds to a float64-sized number), huge (an integer of more than MAX_INT_DIGITS
    digits, not computed), large (beyond a float64) or bad (1 / 0, log(-1), complex)."""
    try:
        if _bounded_eval(tree):
            return "ok"
        return "bad"
    except _TooLarge:
        return "huge"
    except OverflowError:
        return "large"


def _bounded_eval(tree: tuple) -> bool:
    """Evaluate a constant expression tree (depth bounded by the parser) without ever
    building an integer beyond MAX_INT_DIGITS digits (raises _TooLarge instead); raises
    OverflowError for a result beyond a float64. Returns False when it does not fold
    (division by zero, log of a negative number, a complex result)."""

    def ev(n: tuple) -> Any:
        tag = n[0]
        if tag == "num":
            return n[1]
        if tag == "neg":
            r = -ev(n[1])
        elif tag == "call":
            x = ev(n[2])
            if n[1] == "sqrt":
                r = x**0.5
            else:
                r = getattr(math, n[1])(x)
        else:
            a, b = ev(n[1]), ev(n[2])
            if tag == "+":
                r = a + b
            elif tag == "-":
                r = a - b
            elif tag == "*":
                r = a * b
            elif tag == "/":
                r = a / b
            else:
                if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 0:
                    digits = b * math.log10(abs(a))
                    if digits > MAX_INT_DIGITS:
                        raise _TooLarge
                    if digits > 309:
                        raise OverflowError("beyond a float64")
                r = a**b
        if isinstance(r, complex):
            raise ValueError("complex")
        if _too_large(r):
            raise _TooLarge
        if abs(r) > MAX_FLOAT or r != r:  # beyond a float64, inf or nan
            raise OverflowError("beyond a float64")
        return r

    try:
        ev(tree)
    except (ZeroDivisionError, ValueError, TypeError):
        return False
    return True


def _all_int(tree: tuple) -> bool:
    if tree[0] == "num":
        return isinstance(tree[1], int)
    if tree[0] in ("/", "call"):
        return False
    if tree[0] == "**":
        return _all_int(tree[1]) and _all_int(tree[2]) and tree[2][0] == "num" and tree[2][1] >= 0
    return all(_all_int(c) for c in tree[1:] if isinstance(c, tuple))
