"""Every place the code reads or writes a file through a sensitive call is in the inventory of
docs/security.md (issue 23), so that a new one gets a guard and a test before it is merged.

The source is walked with :mod:`ast` (not text search): each call of ``pickle.load(s)``,
``torch.load``, the builtin ``open``, ``.read_text``/``.read_bytes``, ``zipfile.ZipFile`` and
``os.replace`` is keyed by (module path, enclosing function's qualified name, call), never by
line number, so moving code within a function keeps the inventory valid."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
PACKAGES = ("ncsn_core", "dsl", "reports")
ROW = re.compile(r"^\|\s*`(?P<module>[^`]+)`\s*\|\s*`(?P<function>[^`]+)`\s*\|\s*`(?P<call>[^`]+)`\s*\|")


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name) and f.id == "open":
        return "open"
    if isinstance(f, ast.Attribute):
        base = f.value
        owner = base.id if isinstance(base, ast.Name) else None
        if f.attr in ("load", "loads") and owner == "pickle":
            return f"pickle.{f.attr}"
        if f.attr == "load" and owner == "torch":
            return "torch.load"
        if f.attr == "ZipFile" and owner == "zipfile":
            return "zipfile.ZipFile"
        if f.attr == "replace" and owner == "os":
            return "os.replace"
        if f.attr in ("read_text", "read_bytes"):
            return f.attr
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.stack: list[str] = []
        self.found: set[tuple[str, str, str]] = set()

    def _scope(self, node: ast.AST, name: str) -> None:
        self.stack.append(name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scope(node, node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scope(node, node.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope(node, node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope(node, "<lambda>")

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node)
        if name is not None:
            self.found.add((self.module, ".".join(self.stack) or "<module>", name))
        self.generic_visit(node)


def source_calls() -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            finder = _Finder(rel)
            finder.visit(ast.parse(path.read_text(encoding="utf-8"), filename=rel))
            out |= finder.found
    return out


def inventory() -> set[tuple[str, str, str]]:
    rows = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            rows.add((m["module"], m["function"], m["call"]))
    return rows


def test_every_sensitive_call_is_in_the_inventory() -> None:
    missing = sorted(source_calls() - inventory())
    assert not missing, (
        "calls that read or write files are not in docs/security.md's inventory (add a row with its "
        "guard and test):\n" + "\n".join(f"| `{m}` | `{f}` | `{c}` |" for m, f, c in missing)
    )


def test_the_inventory_has_no_stale_rows() -> None:
    stale = sorted(inventory() - source_calls())
    assert not stale, "rows of docs/security.md that match no call any more:\n" + "\n".join(map(str, stale))


def test_the_finder_sees_each_kind_of_call() -> None:
    code = (
        "import pickle, torch, zipfile, os\n"
        "def f(p):\n"
        "    pickle.loads(b'')\n    torch.load(p)\n    open(p)\n    p.read_text()\n"
        "    zipfile.ZipFile(p)\n    os.replace(p, p)\n"
        "class C:\n    def g(self, p):\n        return p.read_bytes()\n"
    )
    finder = _Finder("m.py")
    finder.visit(ast.parse(code))
    assert {(f, c) for _, f, c in finder.found} == {
        ("f", "pickle.loads"),
        ("f", "torch.load"),
        ("f", "open"),
        ("f", "read_text"),
        ("f", "zipfile.ZipFile"),
        ("f", "os.replace"),
        ("C.g", "read_bytes"),
    }
