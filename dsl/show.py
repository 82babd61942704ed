"""Canonical text of a RunSpec for `repro compile`."""

from __future__ import annotations

from dsl.docgen import value_text
from ncsn_core.spec import ComponentSpec, RunSpec


def _comp(kind: str, c: ComponentSpec | None, named: bool = True) -> str:
    if c is None:
        return ""
    head = f"{kind} {c.name}" if named else kind
    body = ", ".join(f"{k} = {value_text(v)}" for k, v in c.params)
    return f"    {head} {{ {body} }}" if body else f"    {head} {{ }}"


def network_parameters(spec: RunSpec) -> str:
    """'30,117,635 parameters' built on the meta device, or why it is unknown."""
    if spec.network is None:
        return ""
    try:
        from ncsn_core import registry
        from ncsn_core.data import static_shape
        from ncsn_core.networks import count_parameters

        # The shape comes from the data's parameters: compile never reads (or downloads) a dataset.
        shape = static_shape(spec.data.name, spec.data.kwargs())
        if shape is None:
            shape = tuple(registry.lookup("data", spec.data.name).builder(**spec.data.kwargs()).shape)
        n = count_parameters(
            spec.network.name, spec.network.kwargs(), shape, int(spec.noise.get("levels", 1))
        )
        return f"{n:,} parameters"
    except Exception as e:  # noqa: BLE001 - compile must still print the spec
        return f"parameters unknown ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"


def show_spec(spec: RunSpec) -> str:
    lines = [f"experiment {spec.experiment}  # run {spec.hash()}  seed {spec.seed}"]
    lines.append(
        f"    # stages: train {spec.train_hash()}, sample {spec.sample_hash()}, evaluate {spec.eval_hash()}"
    )
    if spec.sweep:
        lines.append("    # sweep point: " + ", ".join(f"{k} = {v}" for k, v in spec.sweep))
    if spec.paper:
        lines.append(f'    paper = "{spec.paper}"')
    for kind in ("data", "noise", "network", "loss"):
        line = _comp(kind, getattr(spec, kind))
        if line:
            if kind == "network":
                line += f"  # {network_parameters(spec)}"
            lines.append(line)
    if spec.train is not None:
        lines.append(_comp("train", spec.train, named=False))
    if spec.sample is not None:
        lines.append("    sample {")
        lines.append("        " + ", ".join(f"{k} = {value_text(v)}" for k, v in spec.sample.params))
        for st in spec.stages:
            lines.append("    " + _comp("stage", st))
        lines.append("    }")
    if spec.evaluate is not None:
        lines.append(_comp("evaluate", spec.evaluate, named=False))
    for p in spec.published:
        vals = ", ".join(f"{k} = {v:g}" + (f" ± {e:g}" if e is not None else "") for k, v, e in p.values)
        lines.append(f'    published "{p.label}" {{ {vals} }}')
    if spec.autos:
        lines.append("    # auto values:")
        for path, a in spec.autos:
            lines.append(f"    #   {path} = {value_text(a.value)}: {a.explanation} ({a.seconds:.2f} s)")
    lines.append("}")
    return "\n".join(lines)
