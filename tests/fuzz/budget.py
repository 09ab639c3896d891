"""How hard the fuzz tests push: small enough for every CI run, larger on demand.

``RUJUKAN_FUZZ_SCALE`` multiplies every example budget (default 1) and turns shrinking on:
``RUJUKAN_FUZZ_SCALE=20 .venv/bin/python -m pytest -m fuzz --timeout 3600`` is the long run (a scale of 4 takes
about 90 s per test on this machine). Generation is derandomized, so a CI run is the same run every time and a
failure it finds is found again; ``RUJUKAN_FUZZ_SEED=<n>`` explores other inputs.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings

SCALE = max(1, int(os.environ.get("RUJUKAN_FUZZ_SCALE", "1")))
SEED = os.environ.get("RUJUKAN_FUZZ_SEED")


def examples(ci: int) -> int:
    return ci * SCALE


def fuzz_settings(ci_examples: int, **overrides: Any) -> settings:
    """Hypothesis settings for one fuzz target: no deadline (a real broker answers when it answers), no example
    database (nothing is written under the work tree), and no shrinking in CI (each shrink step is a round trip
    to the services; the failure's first example is reported as found)."""
    values: dict[str, Any] = {
        "max_examples": examples(ci_examples),
        "deadline": None,
        "database": None,
        "derandomize": SEED is None,
        "suppress_health_check": list(HealthCheck),
        "phases": [Phase.explicit, Phase.generate] if SCALE == 1 else list(Phase),
    }
    values.update(overrides)
    return settings(**values)


def seeded(test: Any) -> Any:
    """``test`` with ``RUJUKAN_FUZZ_SEED`` as its hypothesis seed when one is set."""
    if SEED is None:
        return test
    from hypothesis import seed

    return seed(int(SEED))(test)
