"""Settings flags: one per field, flag over variable over default, bad values are usage errors."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from dhan_postback.cli import main
from dhan_postback.cli.options import DISPATCHER_FIELDS, settings_from_options, settings_options
from dhan_postback.settings import ServiceSettings


@click.command()
@settings_options()
def show(**options: Any) -> None:
    settings = settings_from_options(options)
    click.echo(f"{settings.timeout} {settings.allow_loopback} {settings.retry_schedule}")


def run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(show, args, env=env or {})
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_every_settings_field_has_a_flag_naming_its_variable() -> None:
    help_text = CliRunner().invoke(show, ["--help"], terminal_width=200).output
    for name in ServiceSettings.model_fields:
        assert "--" + name.replace("_", "-") in help_text
        assert "DHAN_POSTBACK_" + name.upper() in help_text


def test_without_flags_or_variables_the_defaults_apply() -> None:
    assert (
        run([])
        == "5.0 False (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)"
    )


def test_flags_take_durations_and_schedules_as_people_write_them() -> None:
    assert run(["--timeout", "250ms", "--allow-loopback", "--retry-schedule", "0s,50ms"]) == (
        "0.25 True (0.0, 0.05)"
    )


def test_a_variable_applies_when_no_flag_is_given() -> None:
    env = {"DHAN_POSTBACK_TIMEOUT": "2s", "DHAN_POSTBACK_ALLOW_LOOPBACK": "true"}
    assert run([], env).startswith("2.0 True")


def test_a_flag_wins_over_its_variable() -> None:
    assert run(["--timeout", "3s"], {"DHAN_POSTBACK_TIMEOUT": "9s"}).startswith("3.0")


@pytest.mark.parametrize("args", [["--timeout", "soon"], ["--max-in-flight", "0"]])
def test_a_bad_value_is_a_usage_error_naming_the_flag(args: list[str]) -> None:
    result = CliRunner().invoke(show, args)
    assert result.exit_code == 2
    assert args[0] in result.output


def test_an_unknown_field_is_refused_when_building_options() -> None:
    with pytest.raises(ValueError, match="not settings fields"):
        settings_options(include=["no_such_setting"])


def test_the_worker_command_takes_exactly_the_dispatcher_settings() -> None:
    help_text = CliRunner().invoke(main, ["worker", "--help"], terminal_width=200).output
    for name in ServiceSettings.model_fields:
        flag = "--" + name.replace("_", "-") + " "
        assert (flag in help_text) == (name in DISPATCHER_FIELDS), name


def test_the_worker_is_listed_among_the_commands() -> None:
    assert "worker" in CliRunner().invoke(main, ["--help"]).output
