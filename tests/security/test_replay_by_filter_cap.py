"""Vector: one replay-by-filter call re-queues everything it matches (issue 20, item 6).

A filter can match millions of deliveries; one call now replays at most ``--max-replay``
(default 10,000) of them, oldest first, and its answer says how to continue.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.service import running_service
from tests.helpers.updates import update


def test_a_replay_by_filter_is_capped_and_pages_the_rest(tmp_path: Path) -> None:
    with running_service(tmp_path, max_replay=3) as service:
        token = service.create_token()
        client = token["dhanClientId"]
        created = service.delivery_ids(
            token["accessToken"], [update(client, f"{client}-{n}") for n in range(7)]
        )
        pages: list[dict[str, object]] = []
        body: dict[str, object] = {"dhanClientId": client}
        while True:
            response = service.http.post("/v2/deliveries/replay", json=body, headers=service.admin)
            assert response.status_code == 202, response.text
            pages.append(response.json())
            cursor = response.json()["nextCursor"]
            if cursor is None:
                break
            body = {"dhanClientId": client, "cursor": cursor}

    assert [len(page["deliveryIds"]) for page in pages] == [3, 3, 1]  # type: ignore[arg-type]
    assert sorted(i for page in pages for i in page["deliveryIds"]) == sorted(created)  # type: ignore[attr-defined]
    assert '"cursor"' in str(pages[0]["note"]) and "note" not in pages[-1]
