"""Vector: secrets on the command line, visible to every user in ``ps`` (issue 20, item 6).

Every secret-taking command reads its secrets from a file (``--*-file``) or a variable; here
the receiver takes two secrets from one file, ``send`` signs with a secret from a file, and
neither secret shows in the processes' command lines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from dhan_postback import signing
from tests.helpers.processes import ServerProcess
from tests.helpers.servers import free_port
from tests.helpers.updates import signed, update_body


def _command_line(process: ServerProcess) -> str:
    assert process.process is not None
    return Path(f"/proc/{process.process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_receiver_takes_several_secrets_from_a_file_kept_out_of_ps(tmp_path: Path) -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    secrets_file = tmp_path / "receiver.secrets"
    secrets_file.write_text(f"# rotated on 2026-12-01\n{new}\n{old}\n")
    port = free_port()
    args = ["receive", "--port", str(port), "--db", str(tmp_path / "r.db"), "--quiet"]
    receiver = ServerProcess(
        [*args, "--secret-file", str(secrets_file)],
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    body = update_body("900002", "TRADED", filled_qty=1)
    url = f"http://127.0.0.1:{port}/"
    with receiver:
        by_new = httpx.post(url, content=body, headers=signed(new, body, "msg_new"))
        by_old = httpx.post(url, content=body, headers=signed(old, body, "msg_old"))
        unsigned = httpx.post(url, content=body, headers={"content-type": "application/json"})
        command_line = _command_line(receiver)
    assert by_new.status_code == 200 and by_old.status_code == 200
    assert unsigned.status_code == 401
    assert new not in command_line and old not in command_line


def test_send_signs_with_a_secret_from_a_file(tmp_path: Path) -> None:
    secret = signing.generate_secret()
    (tmp_path / "send.secret").write_text(secret + "\n")
    port = free_port()
    args = ["receive", "--port", str(port), "--db", str(tmp_path / "r.db"), "--quiet"]
    receiver = ServerProcess(
        args,
        env={"DHAN_POSTBACK_RECEIVER_SECRET": secret},
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    with receiver:
        sent = subprocess.run(
            [sys.executable, "-m", "dhan_postback", "send", f"http://127.0.0.1:{port}/",
             "--allow-loopback", "--secret-file", str(tmp_path / "send.secret")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "delivered" in sent.stderr


def test_a_missing_secret_file_is_one_line_error(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "dhan_postback", "send", "http://127.0.0.1:9/",
         "--secret-file", str(tmp_path / "absent")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: --secret-file: cannot read {tmp_path / 'absent'}: No such file or directory"
    ]
    assert "Traceback" not in refused.stderr
