"""Write tests/fixtures/compile_json.json: `repro compile --json` of every papers/*.exp file.

The fixture pins every hash and canonical value: a refactor must leave it byte-identical
(tests/test_compile_fixture.py). A deliberate change of meaning regenerates it with
`python tests/gen_compile_fixture.py` and says why in its commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "compile_json.json"


def compile_all() -> dict[str, list]:
    sys.path.insert(0, str(ROOT))
    from dsl.compiler import compile_file
    from dsl.errors import DiagnosticError

    out: dict[str, list] = {}
    for f in sorted((ROOT / "papers").glob("*.exp")):
        try:
            specs = compile_file(f, compute_auto=True, warnings=[])
        except DiagnosticError as e:  # e.g. CIFAR-10 absent for sigma_max = auto: the rest is pinned
            print(f"note: papers/{f.name}: only the experiments that compiled are pinned:\n{e}")
            specs = e.specs
        out[f.name] = [s.canonical() for s in specs]
    # whether an auto value came from the cache is said in its explanation; it is not meaning
    return json.loads(json.dumps(out, sort_keys=True).replace(", cached)", ")"))


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(compile_all(), indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
