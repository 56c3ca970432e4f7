from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def docs_example() -> bytes:
    """The broker's documented example body, verbatim, invalid JSON included."""
    return (FIXTURES / "docs_example.json").read_bytes()
