"""``dhan-postback worker`` flags: the dispatcher's settings, flag over variable over default."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from dhan_postback.cli import main
from dhan_postback.cli.options import settings_options
from dhan_postback.settings import DISPATCHER_FIELDS, ServiceSettings


@click.command()
@settings_options(ServiceSettings, only=DISPATCHER_FIELDS)
def show(settings: ServiceSettings) -> None:
    click.echo(f"{settings.timeout} {settings.allow_loopback} {settings.retry_schedule}")


def run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(show, args, env=env or {})
    assert result.exit_code == 0, result.output
    return result.output.strip()


def worker_help() -> str:
    return CliRunner().invoke(main, ["worker", "--help"], terminal_width=200).output


def test_the_worker_takes_exactly_the_dispatcher_settings() -> None:
    help_text = worker_help()
    for name in set(ServiceSettings.model_fields) - {"host", "port"}:
        flag = "--" + name.replace("_", "-") + " "
        assert (flag in help_text) == (name in DISPATCHER_FIELDS), name


def test_the_worker_host_and_port_are_its_own_and_off_by_default() -> None:
    help_text = worker_help()
    assert "DHAN_POSTBACK_WORKER_PORT" in help_text
    assert "DHAN_POSTBACK_WORKER_HOST" in help_text
    assert "DHAN_POSTBACK_PORT" not in help_text


def test_each_worker_flag_names_its_environment_variable() -> None:
    help_text = worker_help()
    for name in DISPATCHER_FIELDS:
        assert "DHAN_POSTBACK_" + name.upper() in help_text


def test_the_dispatcher_settings_are_real_settings() -> None:
    assert set(DISPATCHER_FIELDS) <= set(ServiceSettings.model_fields)


def test_the_worker_is_listed_among_the_commands() -> None:
    assert "worker" in CliRunner().invoke(main, ["--help"]).output


def test_without_flags_or_variables_the_defaults_apply() -> None:
    assert run([]).startswith("5.0 False (0.0, 5.0, 30.0")


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


def test_a_schedule_that_does_not_start_at_once_is_refused_saying_to_start_with_0s() -> None:
    result = CliRunner().invoke(show, ["--retry-schedule", "5s,30s"])
    assert result.exit_code == 2
    assert "--retry-schedule" in result.output and "start the schedule with 0s" in result.output


def test_a_schedule_given_as_delays_must_start_at_once_too() -> None:
    with pytest.raises(ValueError, match="start the schedule with 0s"):
        ServiceSettings(retry_schedule=(5.0, 30.0))


def test_an_unknown_field_is_refused_when_building_flags() -> None:
    with pytest.raises(ValueError, match="not fields of ServiceSettings"):
        settings_options(ServiceSettings, only=["no_such_setting"])
