"""Canonical text of a RunSpec for `repro compile` (blocks in the schema's order)."""

from __future__ import annotations

from ncsn_core import schema
from ncsn_core.spec import ComponentSpec, RunSpec
from ncsn_core.values import value_text


def _items(c: ComponentSpec) -> str:
    return ", ".join(f"{k} = {value_text(v)}" for k, v in c.params)


def _comp(head: str, c: ComponentSpec, indent: str = "    ") -> str:
    body = _items(c)
    return f"{indent}{head} {{ {body} }}" if body else f"{indent}{head} {{ }}"


def show_head(spec: RunSpec) -> str:
    """The spec's first line: its experiment, run hash and seed."""
    return f"experiment {spec.experiment}  # run {spec.hash()}  seed {spec.seed}"


def show_spec(spec: RunSpec, notes: dict[str, str] | None = None) -> str:
    """The spec as `.exp`-like text; ``notes`` adds a trailing comment to a block's line
    (``{"network": "30,117,635 parameters"}``)."""
    notes = notes or {}
    lines = [show_head(spec)]
    select = f"select {spec.select_hash()}, " if spec.select is not None else ""
    lines.append(
        f"    # stages: train {spec.train_hash()}, {select}sample {spec.sample_hash()}, "
        f"evaluate {spec.eval_hash()}"
        + (f", interpolate {spec.interpolate_hash()}" if spec.interpolate is not None else "")
    )
    if spec.sweep:
        lines.append("    # sweep point: " + ", ".join(f"{k} = {v}" for k, v in spec.sweep))
    if spec.paper:
        lines.append(f"    paper = {value_text(spec.paper)}")
    for b in schema.BLOCKS:
        c = getattr(spec, b.name)
        if c is None:
            continue
        if b.child is None:
            line = _comp(f"{b.name} {c.name}" if b.holds else b.name, c)
            lines.append(line + (f"  # {notes[b.name]}" if b.name in notes else ""))
            continue
        lines.append(f"    {b.name} {{")
        lines.append("        " + _items(c))
        for st in getattr(spec, b.child_field):
            lines.append(_comp(f"{b.child} {st.name}", st, "        "))
        lines.append("    }")
    for p in spec.published:
        vals = ", ".join(f"{k} = {v:g}" + (f" ± {e:g}" if e is not None else "") for k, v, e in p.values)
        lines.append(f'    published "{p.label}" {{ {vals} }}')
    if spec.refs:
        lines.append("    # values that refer to others:")
        lines.extend(f"    #   {path} = {how}" for path, how in spec.refs)
    if spec.autos:
        lines.append("    # auto values:")
        for path, a in spec.autos:
            lines.append(f"    #   {path} = {value_text(a.value)}: {a.explanation} ({a.seconds:.2f} s)")
    lines.append("}")
    return "\n".join(lines)
