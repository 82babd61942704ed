"""Hypothesis strategies shared by the language's property tests (round trip, fuzz)."""

from __future__ import annotations

from hypothesis import strategies as st


def expressions(leaf: st.SearchStrategy[str], depth: int, functions: list[str]) -> st.SearchStrategy[str]:
    """Arithmetic over ``leaf``: binary operators, parentheses, negation, ``functions(...)``."""
    if depth == 0:
        return leaf
    sub = expressions(leaf, depth - 1, functions)
    binary = st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "**"]), sub).map(lambda t: " ".join(t))
    calls = st.tuples(st.sampled_from(functions), sub).map(lambda t: f"{t[0]}({t[1]})")
    return st.one_of(leaf, binary, sub.map(lambda e: f"({e})"), sub.map(lambda e: f"-{e}"), calls)
