"""The settings reference in the docs is the one the flags are made from, and every command's
help reads the same way: flag, variable, default, then examples."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dhan_postback.cli import COMMANDS, main
from dhan_postback.cli.options import settings_table
from dhan_postback.cli.reference import settings_reference
from dhan_postback.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = sorted(set(COMMANDS) - {"help"})


def _between(text: str, start: str, end: str) -> str:
    return text.split(start + "\n", 1)[1].split(end, 1)[0]


def test_docs_operations_holds_the_reference_of_every_setting() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    shown = _between(docs, "<!-- settings reference: generated -->", "<!-- end of")
    assert shown == settings_reference(), (
        "docs/operations.md is behind the settings: paste the output of "
        "`python -m dhan_postback.cli.reference` between its markers"
    )


def test_the_readme_holds_the_table_of_serves_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = _between(readme, "<!-- serve settings: generated -->", "<!-- end of")
    assert shown == settings_table(ServiceSettings) + "\n"


def _help(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def _leaves() -> list[list[str]]:
    """Every command and sub-command, as its argument path."""
    paths = []
    for name in RUNNABLE:
        command = main.get_command(click.Context(main), name)
        if isinstance(command, click.Group):
            paths += [[name, sub] for sub in command.commands]
        paths.append([name])
    return paths


@pytest.mark.parametrize("path", _leaves(), ids=" ".join)
def test_every_help_ends_with_examples_of_the_command(path: list[str]) -> None:
    before, examples = _help(*path).rsplit("Examples:", 1)
    assert "Options:" in before
    assert f"dhan-postback {' '.join(path)}" in examples


def _is_group(path: list[str]) -> bool:
    """A command of sub-commands (``tokens``): it has no settings of its own."""
    return len(path) == 1 and isinstance(
        main.get_command(click.Context(main), path[0]), click.Group
    )


@pytest.mark.parametrize("path", [p for p in _leaves() if not _is_group(p)], ids=" ".join)
def test_every_setting_flag_shows_its_variable_and_default(path: list[str]) -> None:
    options = " ".join(_help(*path).split("Options:", 1)[1].split("Examples:", 1)[0].split())
    assert "[env: DHAN_POSTBACK_" in options
    assert "; default: " in options


def test_help_with_a_command_shows_that_commands_help() -> None:
    result = CliRunner().invoke(main, ["help", "serve"], terminal_width=100)
    assert result.exit_code == 0
    assert result.output == _help("serve")


def test_help_alone_shows_the_list_of_commands() -> None:
    result = CliRunner().invoke(main, ["help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in RUNNABLE)


def test_durations_are_shown_as_people_write_them() -> None:
    text = _help("serve")
    assert "--timeout DURATION" in text
    assert "default: 5s]" in text
    assert "--shutdown-grace DURATION" in text


def test_the_relay_defaults_are_the_relay_packages() -> None:
    from dhan_postback.relay import DEFAULT_API_URL, DEFAULT_WS_URL
    from dhan_postback.settings import RelaySettings

    fields = RelaySettings.model_fields
    assert (fields["ws_url"].default, fields["api_url"].default) == (
        DEFAULT_WS_URL,
        DEFAULT_API_URL,
    )
