"""The benchmark scripts stay runnable: a tiny run of each (timings are not checked here)."""

import pytest

from benchmarks import page_with_total


@pytest.mark.backends("postgresql")
@pytest.mark.usefixtures("backend")  # selects PostgreSQL, and fails in CI when it is missing
async def test_page_with_total_runs_and_variants_agree() -> None:
    # main() checks that every variant returns the same page and total before timing them.
    results = await page_with_total.main(rows=3000, repetitions=2, save_results=False)
    for workload in ("indexed", "icontains"):
        assert set(results[workload]) == {
            "raw asyncpg (same SQL)",
            "ServiceBase.page",
            "hand-written SQLModel",
            "advanced-alchemy",
            "FastCRUD",
        }
