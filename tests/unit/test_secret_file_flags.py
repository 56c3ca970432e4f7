"""Every secret setting also has ``--<name>-file`` and ``<VARIABLE>_FILE``, made by
:func:`~dhan_postback.cli.options.settings_options` from the field's ``FromFile`` mark: a
secret kept out of ``ps``. One secret per line; several where the setting takes several."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from dhan_postback.cli.options import settings_options
from dhan_postback.settings import ReceiverSettings, TokensSettings

KEY = "tokens-admin-key-0123456789"


@click.command()
@settings_options(TokensSettings)
def show_key(settings: TokensSettings) -> None:
    assert settings.admin_key is not None
    click.echo(settings.admin_key.get_secret_value())


@click.command()
@settings_options(ReceiverSettings, only=("secret",))
def show_secrets(settings: ReceiverSettings) -> None:
    click.echo(" ".join(settings.secret))


def _invoke(command: click.Command, *args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(command, list(args), env={"DHAN_POSTBACK_ADMIN_KEY": "", **env})
    return result.exit_code, result.output


def test_a_secret_is_read_from_its_file_flag(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(f"# the admin key\n{KEY}\n")
    assert _invoke(show_key, "--admin-key-file", str(tmp_path / "key")) == (0, KEY + "\n")


def test_a_secret_is_read_from_the_file_its_variable_names(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    code, output = _invoke(show_key, DHAN_POSTBACK_ADMIN_KEY_FILE=str(tmp_path / "key"))
    assert (code, output) == (0, KEY + "\n")


def test_a_secret_and_its_file_together_are_one_error(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    code, output = _invoke(
        show_key, "--admin-key-file", str(tmp_path / "key"), DHAN_POSTBACK_ADMIN_KEY=KEY
    )
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert code != 0
    assert errors == [
        "Error: give the secret or --admin-key-file, not both (unset the variable or the flag)"
    ]


def test_a_file_of_two_secrets_for_a_setting_of_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(f"{KEY}\n{KEY}-2\n")
    code, output = _invoke(show_key, "--admin-key-file", str(tmp_path / "key"))
    assert code != 0
    assert "must hold exactly one secret" in output and KEY not in output


def test_a_setting_of_several_secrets_takes_every_line_after_the_flags(tmp_path: Path) -> None:
    (tmp_path / "secrets").write_text("whsec_new\n\nwhsec_old\n")
    code, output = _invoke(
        show_secrets, "--secret", "whsec_flag", "--secret-file", str(tmp_path / "secrets")
    )
    assert (code, output) == (0, "whsec_flag whsec_new whsec_old\n")
