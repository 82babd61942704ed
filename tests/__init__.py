"""The test suite as a package, so that ``python -m tests.fuzz`` finds it (a stray ``tests``
package installed by a dependency would otherwise shadow this folder). Test modules import
their helpers as ``from conftest import ...``: this folder stays importable by plain name."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
