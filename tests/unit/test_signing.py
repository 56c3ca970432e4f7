from __future__ import annotations

import datetime

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


def test_a_signer_gives_each_message_its_own_signature_however_often_it_signs() -> None:
    secret = signing.generate_secret()
    signer = signing.Signer(secret)
    first = signer.signature("msg_6", 1_700_000_000, BODY)
    signer.signature("msg_7", 1_700_000_001, BODY + b" ")
    assert signer.signature("msg_6", 1_700_000_000, BODY) == first
    assert first == standardwebhooks.Webhook(secret).sign(
        "msg_6", _utc(1_700_000_000), BODY.decode()
    )


def test_a_signature_verifier_checks_many_requests_with_one_set_of_keys() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    verifier = signing.SignatureVerifier([old, new])
    for index, secret in enumerate([new, old, new]):
        headers = signing.Signer(secret).headers(f"msg_{index}", BODY + str(index).encode())
        assert verifier.verify(headers, BODY + str(index).encode()) == f"msg_{index}"


def test_a_signature_verifier_refuses_a_signature_by_another_secret() -> None:
    verifier = signing.SignatureVerifier(signing.generate_secret())
    headers = signing.Signer(signing.generate_secret()).headers("msg_8", BODY)
    with pytest.raises(SignatureError, match="no signature matches"):
        verifier.verify(headers, BODY)


def test_a_signature_verifier_applies_its_tolerance() -> None:
    secret = signing.generate_secret()
    verifier = signing.SignatureVerifier(secret, tolerance=10)
    headers = signing.Signer(secret).headers("msg_9", BODY, timestamp=1_700_000_000)
    assert verifier.verify(headers, BODY, now=1_700_000_010) == "msg_9"
    with pytest.raises(SignatureError, match="tolerance"):
        verifier.verify(headers, BODY, now=1_700_000_011)


def test_a_signature_verifier_refuses_a_malformed_secret_when_built() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signing.SignatureVerifier(["whsec_not base64!"])


def _utc(timestamp: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
