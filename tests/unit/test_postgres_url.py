"""The PostgreSQL store reads its pool settings from the database URL, and libpq never sees them."""

from __future__ import annotations

import pytest

from dhan_postback.service.store.postgres import PoolSettings, split_pool_settings


def test_pool_settings_default_when_the_url_has_none() -> None:
    conninfo, settings = split_pool_settings("postgresql://app@db/postback")
    assert settings == PoolSettings(min_size=2, max_size=10, timeout=10.0)
    assert conninfo == "postgresql://app@db/postback?application_name=dhan-postback"


def test_pool_settings_come_out_of_the_url_and_other_options_stay() -> None:
    conninfo, settings = split_pool_settings(
        "postgresql://app:pw@db:5433/postback?sslmode=require&pool_min_size=0"
        "&pool_max_size=25&pool_timeout=2.5&application_name=node-7"
    )
    assert settings == PoolSettings(min_size=0, max_size=25, timeout=2.5)
    assert conninfo == (
        "postgresql://app:pw@db:5433/postback?sslmode=require&application_name=node-7"
    )


@pytest.mark.parametrize(
    "query",
    ["pool_max_size=many", "pool_min_size=5&pool_max_size=2", "pool_max_size=0"],
)
def test_impossible_pool_settings_are_refused(query: str) -> None:
    with pytest.raises(ValueError, match="pool"):
        split_pool_settings(f"postgresql://app@db/postback?{query}")
