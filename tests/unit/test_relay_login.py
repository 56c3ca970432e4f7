"""The documented login messages, and that their secrets stay out of sight."""

from __future__ import annotations

import json

import pytest

from dhan_postback.relay.client import Login


def test_an_individual_logs_in_with_client_id_and_token() -> None:
    message = json.loads(Login.individual("1000000001", "eyJ-token").message())
    assert message == {
        "LoginReq": {"MsgCode": 42, "ClientId": "1000000001", "Token": "eyJ-token"},
        "UserType": "SELF",
    }


def test_a_partner_logs_in_with_partner_id_and_secret_and_no_token() -> None:
    message = json.loads(Login.partner("partner-7", "s3cret").message())
    assert message == {
        "LoginReq": {"MsgCode": 42, "ClientId": "partner-7"},
        "UserType": "PARTNER",
        "Secret": "s3cret",
    }


def test_msg_code_is_sent_as_a_number() -> None:
    assert '"MsgCode": 42' in Login.individual("1", "t").message()


def test_repr_and_description_never_show_the_secrets() -> None:
    for login in (Login.individual("1000000001", "eyJ-token"), Login.partner("p", "s3cret")):
        shown = repr(login) + login.describe()
        assert "eyJ-token" not in shown and "s3cret" not in shown


@pytest.mark.parametrize(("who", "secret"), [("", "t"), ("1", "")])
def test_an_incomplete_login_is_refused(who: str, secret: str) -> None:
    with pytest.raises(ValueError):
        Login.individual(who, secret)
    with pytest.raises(ValueError):
        Login.partner(who, secret)
