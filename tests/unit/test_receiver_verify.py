from __future__ import annotations

import hashlib
import time

import pytest

from dhan_postback import signing
from dhan_postback.errors import PermissionDenied, SignatureError, UnreadablePayload
from dhan_postback.receiver import Postback, parse_and_verify
from dhan_postback.receiver.verify import redact_headers
from tests.helpers.updates import signed, update_body

SECRET = signing.generate_secret()
BODY = update_body("42", "TRADED", filled_qty=10)


def test_without_a_secret_the_docs_example_is_read_and_keyed_by_its_hash(
    docs_example: bytes,
) -> None:
    postback = parse_and_verify({}, docs_example)
    assert isinstance(postback, Postback)
    assert postback.order_id == "112111182198"
    assert postback.order_status == "PENDING"
    assert postback.leg_name is None
    assert postback.dedupe_key == "sha256:" + hashlib.sha256(docs_example).hexdigest()


def test_a_valid_signature_is_accepted_and_its_webhook_id_is_the_dedupe_key() -> None:
    postback = parse_and_verify(signed(SECRET, BODY, "msg_1"), BODY, secret=SECRET)
    assert postback.webhook_id == "msg_1"
    assert postback.dedupe_key == "id:msg_1"
    assert postback.filled_qty == 10


def test_header_names_may_use_any_letter_case() -> None:
    headers = {name.title(): value for name, value in signed(SECRET, BODY, "msg_2").items()}
    assert parse_and_verify(headers, BODY, secret=SECRET).webhook_id == "msg_2"


def test_any_of_several_secrets_verifies_during_rotation() -> None:
    old = signing.generate_secret()
    assert parse_and_verify(signed(SECRET, BODY, "m"), BODY, secret=[old, SECRET]).order_id == "42"


def test_a_forged_signature_is_refused() -> None:
    headers = signed(signing.generate_secret(), BODY, "msg_3")
    with pytest.raises(SignatureError):
        parse_and_verify(headers, BODY, secret=SECRET)


def test_a_changed_body_is_refused() -> None:
    headers = signed(SECRET, BODY, "msg_4")
    with pytest.raises(SignatureError):
        parse_and_verify(headers, BODY.replace(b"TRADED", b"CANCELLED"), secret=SECRET)


def test_a_missing_signature_is_refused_when_a_secret_is_set() -> None:
    with pytest.raises(SignatureError, match="missing"):
        parse_and_verify({"content-type": "application/json"}, BODY, secret=SECRET)


def test_a_timestamp_older_than_the_tolerance_is_refused() -> None:
    headers = signed(SECRET, BODY, "msg_5", timestamp=int(time.time()) - 301)
    with pytest.raises(SignatureError, match="tolerance"):
        parse_and_verify(headers, BODY, secret=SECRET)


def test_now_can_be_given_to_check_a_recorded_request() -> None:
    headers = signed(SECRET, BODY, "msg_6", timestamp=1_700_000_000)
    assert parse_and_verify(headers, BODY, secret=SECRET, now=1_700_000_100).order_id == "42"


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    with pytest.raises(SignatureError):
        parse_and_verify(signed(signing.generate_secret(), b"junk", "m"), b"junk", secret=SECRET)


def test_an_unreadable_body_raises_unreadable_payload_with_400() -> None:
    with pytest.raises(UnreadablePayload) as caught:
        parse_and_verify({}, b"not json")
    assert caught.value.http_status == 400


def test_a_client_id_outside_the_allow_list_is_refused_with_403() -> None:
    with pytest.raises(PermissionDenied) as caught:
        parse_and_verify({}, BODY, allowed_client_ids={"999"})
    assert caught.value.http_status == 403
    assert parse_and_verify({}, BODY, allowed_client_ids={"1000000003"}).order_id == "42"


def test_a_malformed_secret_is_refused_when_configured() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        parse_and_verify({}, BODY, secret="whsec_not base64!")


def test_redacted_headers_hide_credentials_and_keep_the_rest() -> None:
    kept = redact_headers(
        {"Authorization": "Bearer x", "access-token": "t", "Cookie": "c", "User-Agent": "ua"}
    )
    assert kept == {
        "authorization": "[redacted]",
        "access-token": "[redacted]",
        "cookie": "[redacted]",
        "user-agent": "ua",
    }
