from __future__ import annotations

import pytest
import standardwebhooks

from dhan_postback import signing
from dhan_postback.errors import SignatureError

BODY = b'{"orderId":"1"}'


def test_generated_secrets_have_the_whsec_prefix() -> None:
    assert signing.generate_secret().startswith("whsec_")


def test_our_signature_verifies_with_the_standardwebhooks_package() -> None:
    secret = signing.generate_secret()
    headers = signing.Signer(secret).headers("msg_1", BODY)
    assert standardwebhooks.Webhook(secret).verify(BODY, headers) is not None


def test_a_standardwebhooks_signature_verifies_with_ours() -> None:
    import datetime

    secret = signing.generate_secret()
    now = datetime.datetime.now(tz=datetime.UTC)
    signature = standardwebhooks.Webhook(secret).sign("msg_2", now, BODY.decode())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert signing.verify(secret, headers, BODY) == "msg_2"


def test_verify_accepts_any_of_several_signatures_and_secrets() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    headers = signing.Signer(new).headers("msg_3", BODY)
    headers["webhook-signature"] = "v1,bm9wZQ== " + headers["webhook-signature"]
    assert signing.verify([old, new], headers, BODY) == "msg_3"


def test_verify_refuses_a_changed_body() -> None:
    secret = signing.generate_secret()
    headers = signing.Signer(secret).headers("msg_4", BODY)
    with pytest.raises(SignatureError, match="no signature matches"):
        signing.verify(secret, headers, BODY + b" ")


def test_verify_refuses_a_stale_timestamp() -> None:
    secret = signing.generate_secret()
    headers = signing.Signer(secret).headers("msg_5", BODY, timestamp=1_000_000)
    with pytest.raises(SignatureError, match="tolerance"):
        signing.verify(secret, headers, BODY)


def test_verify_refuses_missing_headers() -> None:
    with pytest.raises(SignatureError, match="missing"):
        signing.verify(signing.generate_secret(), {}, BODY)
