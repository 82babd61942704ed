"""Hash stability (same meaning → same hash) and sensitivity (any change of meaning → new hash)."""

from __future__ import annotations

from pathlib import Path

from conftest import BASE

from dsl.compiler import compile_file


def spec_of(write, text: str, name: str = "x.exp", **kw):  # type: ignore[no-untyped-def]
    specs = compile_file(write(name, text), compute_auto=False, **kw)
    assert len(specs) == 1
    return specs[0]


def test_whitespace_comments_order_and_spelling_do_not_matter(write) -> None:  # type: ignore[no-untyped-def]
    a = spec_of(write, BASE)
    b_src = """# a comment
experiment e {   # trailing
    loss dsm { weight = sigma**2 }
    network ncsn { ngf = 8, }
    noise geometric { levels = 10, sigma_min = 1e-2, sigma_max = 1 }
    data digits { dequantize = uniform }
    sample { stage annealed_langevin { steps_per_level = 2, step_size = 0.00002 } }
    train { batch_size = 8, iterations = 10, optimizer = adam }
}
"""
    b = spec_of(write, b_src, "y.exp")
    assert a == b
    assert a.hash() == b.hash()
    assert a.canonical()["hash"] == b.canonical()["hash"]


def test_which_file_set_a_value_does_not_matter(write) -> None:  # type: ignore[no-untyped-def]
    direct = spec_of(write, BASE.replace("iterations = 10", "iterations = 50k"))
    write("base.exp", BASE)
    child = compile_file(
        write("child.exp", 'import "base.exp"\nexperiment e2 extends e { train.iterations = 50_000 }\n'),
        compute_auto=False,
    )[0]
    via_set = spec_of(write, BASE, "z.exp", sets=["train.iterations=50000"])
    assert direct.hash() == child.hash() == via_set.hash()
    assert child.experiment == "e2"


def test_every_change_of_meaning_changes_the_hash(write) -> None:  # type: ignore[no-untyped-def]
    base = spec_of(write, BASE)
    changes = [
        ("levels = 10", "levels = 11"),
        ("ngf = 8", "ngf = 16"),
        ("loss dsm { }", "loss dsm { weight = sigma }"),
        ("iterations = 10", "iterations = 11"),
        ("steps_per_level = 2", "steps_per_level = 3"),
        ("data digits { }", "data digits { flip = true }"),
    ]
    hashes = {base.hash()}
    for old, new in changes:
        h = spec_of(write, BASE.replace(old, new), f"c{len(hashes)}.exp").hash()
        assert h not in hashes, (old, new)
        hashes.add(h)


def test_seed_and_published_are_not_identity(write) -> None:  # type: ignore[no-untyped-def]
    base = spec_of(write, BASE)
    seeded = spec_of(write, BASE.replace("data digits", "seed = 3\n    data digits"), "s.exp")
    pub = spec_of(
        write, BASE.replace("    sample", '    published "T" { fid = 1.5 ± 0.1 }\n    sample'), "p.exp"
    )
    assert seeded.seed == 3 and seeded.hash() == base.hash()
    assert pub.hash() == base.hash() and pub.published[0].values == (("fid", 1.5, 0.1),)


def test_stage_hashes_isolate_stages(write) -> None:  # type: ignore[no-untyped-def]
    base = spec_of(write, BASE)
    sampler = spec_of(write, BASE.replace("steps_per_level = 2", "steps_per_level = 5"), "a.exp")
    assert sampler.train_hash() == base.train_hash()
    assert sampler.sample_hash() != base.sample_hash()
    trained = spec_of(write, BASE.replace("iterations = 10", "iterations = 20"), "b.exp")
    assert trained.train_hash() != base.train_hash() and trained.sample_hash() != base.sample_hash()


def test_sweep_expands_a_grid_and_seed_sweeps_share_a_hash(write) -> None:  # type: ignore[no-untyped-def]
    src = BASE.replace(
        "    sample", "    sweep noise.levels = [5, 10]\n    sweep seed = [0, 1, 2]\n    sample"
    )
    specs = compile_file(write("g.exp", src), compute_auto=False)
    assert len(specs) == 6
    by_levels: dict[int, set[str]] = {}
    for s in specs:
        by_levels.setdefault(s.noise.get("levels"), set()).add(s.hash())
    assert set(by_levels) == {5, 10}
    assert all(len(h) == 1 for h in by_levels.values())  # seeds are repeats of one run
    assert {s.seed for s in specs} == {0, 1, 2}
    assert dict(specs[0].sweep) == {"noise.levels": "5", "seed": "0"}


def test_canonical_json_is_stable(write) -> None:  # type: ignore[no-untyped-def]
    a = spec_of(write, BASE)
    assert a.canonical_json() == spec_of(write, BASE, "again.exp").canonical_json()
    hash(a)  # frozen attrs: hashable


def test_resolved_clone_equals_deepcopy_and_is_independent() -> None:
    """dsl.resolve copies a resolved experiment for every child, cache hit and sweep point with
    Resolved.clone (deepcopy took most of `repro report`'s time): equal to deepcopy, sharing no
    mutable record."""
    import copy

    from dsl.load import load
    from dsl.resolve import resolve

    root = Path(__file__).resolve().parent.parent
    for res in resolve(load(root / "papers" / "ncsnv2_cifar.exp"))[:3]:
        c = res.clone()
        assert c == copy.deepcopy(res)
        for k, e in res.fields.items():
            assert c.fields[k] is not e
        for k, b in res.blocks.items():
            assert c.blocks[k] is not b and all(c.blocks[k].params[p] is not e for p, e in b.params.items())
            assert all(cs is not s for cs, s in zip(c.blocks[k].stages, b.stages, strict=True))
        c.blocks["train"].params["iterations"].origin = "changed"
        assert res.blocks["train"].params["iterations"].origin != "changed"
