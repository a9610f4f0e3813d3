"""Test data for the reference app's tests: valid input, unique values."""

import itertools
from typing import Any

from examples.app.schemas import HeroCreate

# --8<-- [start:factory]
_sequence = itertools.count(1)


def hero_data(**overrides: Any) -> HeroCreate:
    """Valid input with unique values; a test states only what it is about."""
    n = next(_sequence)
    return HeroCreate.model_validate(
        {"name": f"hero {n}", "secret_name": f"secret {n}", **overrides}
    )


# --8<-- [end:factory]
