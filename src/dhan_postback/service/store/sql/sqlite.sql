-- The postback service's storage on SQLite.
--
-- Every statement the SQLite store runs is here, under a "-- name: <name>" header, loaded by
-- name (service/store/queries.py). "migration_<n>" brings the schema from version n-1 to n
-- (PRAGMA user_version); the store runs the missing ones on open, each in one transaction.
--
-- The outbox keeps one FIFO queue per (url, order_id). Only its head, the pending delivery
-- with the smallest seq, may be sent. Instead of searching for heads at claim time (a NOT
-- EXISTS over the whole table), each row carries is_head, kept true by the statements that
-- change a queue: insert_deliveries (a new row is head if its queue has no pending row),
-- refresh_queue_head (after a delivery leaves "pending", or is replayed). The claim then
-- reads a small partial index of due heads.
--
-- Without ANALYZE statistics SQLite would rather read the status index for the claim, so the
-- claim queries name their index (INDEXED BY): they stay proportional to the due heads.
--
-- Statuses are the strings 'pending', 'delivered', 'dead'; targets 'token', 'partner'.
-- Times are seconds since the epoch (REAL). Literal 'pending' in WHERE clauses lets SQLite
-- use the partial indexes, which a bound parameter would not.


-- name: connection_settings
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA busy_timeout = 10000;
PRAGMA cache_size = -32768;
PRAGMA temp_store = MEMORY;


-- name: migration_1
CREATE TABLE tokens (
    token_hash      TEXT PRIMARY KEY,      -- SHA-256 hex of the access token; never the token
    dhan_client_id  TEXT NOT NULL,
    postback_url    TEXT,
    partner_id      TEXT,
    signing_secret  TEXT NOT NULL,         -- whsec_...: the HMAC key, so it cannot be hashed
    created_at      REAL NOT NULL,
    expires_at      REAL NOT NULL,
    revoked_at      REAL
) WITHOUT ROWID;

CREATE TABLE partners (
    partner_id      TEXT PRIMARY KEY,
    postback_url    TEXT NOT NULL,
    signing_secret  TEXT NOT NULL,
    created_at      REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the FIFO order
    id               TEXT NOT NULL,                      -- msg_<ULID>, the webhook-id
    dhan_client_id   TEXT NOT NULL,
    token_hash       TEXT NOT NULL,
    target           TEXT NOT NULL,
    partner_id       TEXT,
    url              TEXT NOT NULL,
    order_id         TEXT NOT NULL,
    payload          BLOB NOT NULL,
    created_at       REAL NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    is_head          INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    round_attempts   INTEGER NOT NULL DEFAULT 0,         -- since creation or the last replay
    next_attempt_at  REAL NOT NULL,
    lease_until      REAL NOT NULL DEFAULT 0,            -- 0: not leased
    delivered_at     REAL,
    last_status_code INTEGER,
    last_error       TEXT,
    after_dead       INTEGER NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX deliveries_id ON deliveries (id);
-- The pending rows of each queue, in order: finds a queue's head.
CREATE INDEX deliveries_queue ON deliveries (url, order_id, seq) WHERE status = 'pending';
-- Due heads, oldest due first: what claim reads.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE is_head = 1 AND status = 'pending';
-- Leases under way (finish and release reset lease_until to 0): when one runs out.
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until > 0;
-- The delivery log's filters.
CREATE INDEX deliveries_client ON deliveries (dhan_client_id, seq);
CREATE INDEX deliveries_status ON deliveries (status, seq);
CREATE INDEX deliveries_order ON deliveries (order_id, seq);

CREATE TABLE attempts (
    id              INTEGER PRIMARY KEY,
    delivery_id     TEXT NOT NULL,
    number          INTEGER NOT NULL,
    started_at      REAL NOT NULL,
    latency_ms      REAL NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    response_prefix TEXT
);

CREATE INDEX attempts_delivery ON attempts (delivery_id, id);


-- name: migration_2
-- Due heads by URL: lets a claim that skips some URLs (a full lane, an open breaker) read the
-- other URLs' heads without stepping over the skipped ones' backlog (select_due_urls and
-- select_due_heads_of_url).
CREATE INDEX deliveries_due_url ON deliveries (url, next_attempt_at)
    WHERE is_head = 1 AND status = 'pending';

-- name: migration_3
-- Dashboard sessions, shared by every node and kept across restarts. Only the SHA-256 of a
-- session id is stored; the id itself lives in the browser's cookie. The cap is per
-- principal (admin, or one token): dashboard_sessions_principal finds a principal's oldest.
CREATE TABLE dashboard_sessions (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,   -- creation order: eviction order
    id_hash         TEXT NOT NULL UNIQUE,
    principal       TEXT NOT NULL,
    dhan_client_id  TEXT,
    token_hash      TEXT,
    created_at      REAL NOT NULL,
    expires_at      REAL NOT NULL,
    flash           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX dashboard_sessions_principal ON dashboard_sessions (principal, seq);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);


-- name: migration_4
-- Idempotent ingest: the first answer to each (client, Idempotency-Key), kept for the
-- idempotency window. Retention: finished deliveries by the time that ages them (delivered
-- ones by delivered_at, dead ones by the due time of their last attempt), so that a pruning
-- batch reads only what it deletes. Turning on incremental vacuum (so that the file shrinks
-- after pruning) needs a VACUUM outside a transaction: the store does it after migrating
-- (SQLiteStore, _enable_incremental_vacuum).
CREATE TABLE idempotency_keys (
    dhan_client_id  TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,                -- SHA-256 hex of the request body
    status          INTEGER NOT NULL,
    response        BLOB NOT NULL,                -- the first answer, byte for byte
    created_at      REAL NOT NULL,
    PRIMARY KEY (dhan_client_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX deliveries_delivered_at ON deliveries (delivered_at) WHERE status = 'delivered';
CREATE INDEX deliveries_dead_at ON deliveries (next_attempt_at) WHERE status = 'dead';


-- name: auto_vacuum
PRAGMA auto_vacuum;

-- name: enable_incremental_vacuum
-- Outside any transaction. On a new, empty file this is instant; an existing file is
-- rewritten once (VACUUM), which takes a while for a large one.
PRAGMA auto_vacuum = INCREMENTAL;
VACUUM;

-- name: freelist_count
PRAGMA freelist_count;

-- name: incremental_vacuum
-- Give one free page back to the file system. Each step of this pragma frees one page, and
-- Python's sqlite3 steps a statement without result columns only once, so the store runs it
-- with executemany, once per free page: one call, a loop in C.
PRAGMA incremental_vacuum(1);

-- name: migration_5
-- Endpoints own the signing secrets, so that a token renewed every day keeps its receiver's
-- secret. One endpoint per owner and URL: a client's Postback URL, or a partner's URL.
-- previous_secrets is a JSON array of [secret, until]: secrets retired by a rotation that
-- still sign, after the current one, until then. paused is for the pause contract.
CREATE TABLE endpoints (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('client', 'partner')),
    owner_id          TEXT NOT NULL,
    url               TEXT NOT NULL,
    signing_secret    TEXT NOT NULL,
    previous_secrets  TEXT NOT NULL DEFAULT '[]',
    secret_rotated_at REAL,
    created_at        REAL NOT NULL,
    paused            INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE UNIQUE INDEX endpoints_owner_url ON endpoints (kind, owner_id, url);

-- Each client's URL becomes an endpoint with the secret of its newest token. The secrets of
-- its older tokens keep signing (second) for 24 hours, so that a receiver still configured
-- with one of them does not break on the upgrade.
INSERT INTO endpoints (id, kind, owner_id, url, signing_secret, created_at)
SELECT 'ep_' || lower(hex(randomblob(13))), 'client', g.dhan_client_id, g.postback_url,
       (SELECT n.signing_secret FROM tokens AS n
        WHERE n.dhan_client_id = g.dhan_client_id AND n.postback_url = g.postback_url
        ORDER BY n.created_at DESC, n.token_hash DESC LIMIT 1),
       g.created_at
FROM (SELECT dhan_client_id, postback_url, MIN(created_at) AS created_at
      FROM tokens WHERE postback_url IS NOT NULL
      GROUP BY dhan_client_id, postback_url) AS g;

UPDATE endpoints
SET previous_secrets = (
    SELECT json_group_array(json_array(t.signing_secret,
                                       (julianday('now') - 2440587.5) * 86400.0 + 86400.0))
    FROM tokens AS t
    WHERE t.dhan_client_id = endpoints.owner_id AND t.postback_url = endpoints.url
      AND t.signing_secret <> endpoints.signing_secret
);

-- Each partner's URL becomes an endpoint with the partner's secret; so do the URLs it had
-- before (deliveries to them may still be pending or replayed), as they were signed so far.
INSERT INTO endpoints (id, kind, owner_id, url, signing_secret, created_at)
SELECT 'ep_' || lower(hex(randomblob(13))), 'partner', partner_id, postback_url,
       signing_secret, created_at
FROM partners;

INSERT OR IGNORE INTO endpoints (id, kind, owner_id, url, signing_secret, created_at)
SELECT 'ep_' || lower(hex(randomblob(13))), 'partner', d.partner_id, d.url,
       p.signing_secret, MIN(d.created_at)
FROM deliveries AS d JOIN partners AS p ON p.partner_id = d.partner_id
WHERE d.target = 'partner'
GROUP BY d.partner_id, d.url;

ALTER TABLE tokens DROP COLUMN signing_secret;
ALTER TABLE partners DROP COLUMN signing_secret;

-- name: migration_6
-- Paused endpoints: a claim asks which URLs have one (endpoints_paused, empty when none is,
-- so the question costs nothing then), and whether another endpoint at such a URL is not
-- paused (endpoints_url), to leave a fully paused URL out of the claim at no cost per head.
CREATE INDEX endpoints_paused ON endpoints (url) WHERE paused = 1;
CREATE INDEX endpoints_url ON endpoints (url, paused);

-- Registry ------------------------------------------------------------------------------

-- name: insert_token
INSERT INTO tokens (token_hash, dhan_client_id, postback_url, partner_id,
                    created_at, expires_at, revoked_at)
VALUES (:token_hash, :dhan_client_id, :postback_url, :partner_id,
        :created_at, :expires_at, :revoked_at);

-- name: get_token
-- With the id of the endpoint its postbacks go to (its client's, at its URL).
SELECT t.token_hash, t.dhan_client_id, t.postback_url, t.partner_id,
       t.created_at, t.expires_at, t.revoked_at, e.id
FROM tokens AS t
LEFT JOIN endpoints AS e
  ON e.kind = 'client' AND e.owner_id = t.dhan_client_id AND e.url = t.postback_url
WHERE t.token_hash = :token_hash;

-- name: list_tokens
-- {where} is "1 = 1" or the client filter.
SELECT t.token_hash, t.dhan_client_id, t.postback_url, t.partner_id,
       t.created_at, t.expires_at, t.revoked_at, e.id
FROM tokens AS t
LEFT JOIN endpoints AS e
  ON e.kind = 'client' AND e.owner_id = t.dhan_client_id AND e.url = t.postback_url
WHERE {where}
ORDER BY t.created_at DESC, t.token_hash DESC;

-- name: revoke_token
UPDATE tokens SET revoked_at = COALESCE(revoked_at, :at) WHERE token_hash = :token_hash;

-- name: migration_8
-- Revoked tokens by when: every node asks for the latest each second (revoked_since), to drop
-- them from its token cache, however many tokens the table has kept.
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- name: migration_9
-- Payloads in a table of their own, by the delivery's seq. A delivery row is rewritten three
-- or four times on its way (leased, maybe promoted to its queue's head, finished), each time
-- in another commit, and every commit writes each page it changed to the WAL (and later to
-- the file): with the payload inline, a row took a fifth of a 4 KiB page, so the rows one
-- commit finishes or leases, scattered when orders have several updates, cost a page each.
-- Without it a page holds five times as many rows (docs/performance.md, "Multi-update
-- orders and many endpoints"). Payloads are written once, in seq order, and read by seq.
CREATE TABLE delivery_payloads (
    seq      INTEGER PRIMARY KEY,   -- deliveries.seq
    payload  BLOB NOT NULL
);
INSERT INTO delivery_payloads (seq, payload) SELECT seq, payload FROM deliveries;
ALTER TABLE deliveries DROP COLUMN payload;
-- Whatever deletes a delivery (retention) deletes its payload.
CREATE TRIGGER deliveries_payload_gone AFTER DELETE ON deliveries
BEGIN
    DELETE FROM delivery_payloads WHERE seq = old.seq;
END;

-- name: migration_10
-- Queue lookups by order: a queue's rows are found through deliveries_order (order_id, seq),
-- which holds every status and is never changed after the insert, with the URL and the
-- status checked on the row (an order has a few updates). deliveries_queue, the pending rows
-- by (url, order_id, seq), had an entry deleted by every finish and written by every insert:
-- with several updates per order, or many URLs, each on a page of its own, one more page
-- written to the WAL per delivery (docs/performance.md, "Queue lookups by order").
DROP INDEX deliveries_queue;

-- name: revoked_since
SELECT token_hash FROM tokens WHERE revoked_at >= :since;

-- name: put_partner
INSERT INTO partners (partner_id, postback_url, created_at)
VALUES (:partner_id, :postback_url, :created_at)
ON CONFLICT (partner_id) DO UPDATE SET
    postback_url = excluded.postback_url,
    created_at = excluded.created_at;

-- name: get_partner
SELECT partner_id, postback_url, created_at
FROM partners
WHERE partner_id = :partner_id;

-- name: insert_endpoint
-- Nothing when the owner already has an endpoint at this URL (get_endpoint_of finds it).
INSERT OR IGNORE INTO endpoints (id, kind, owner_id, url, signing_secret, previous_secrets,
                                 secret_rotated_at, created_at, paused)
VALUES (:id, :kind, :owner_id, :url, :signing_secret, :previous_secrets,
        :secret_rotated_at, :created_at, :paused);

-- name: get_endpoint_of
SELECT id, kind, owner_id, url, signing_secret, created_at, previous_secrets,
       secret_rotated_at, paused
FROM endpoints
WHERE kind = :kind AND owner_id = :owner_id AND url = :url;

-- name: get_endpoint
SELECT id, kind, owner_id, url, signing_secret, created_at, previous_secrets,
       secret_rotated_at, paused
FROM endpoints
WHERE id = :id;

-- name: list_endpoints
SELECT id, kind, owner_id, url, signing_secret, created_at, previous_secrets,
       secret_rotated_at, paused
FROM endpoints
ORDER BY created_at, id;

-- name: rotate_secret
UPDATE endpoints
SET signing_secret = :signing_secret, previous_secrets = :previous_secrets,
    secret_rotated_at = :secret_rotated_at
WHERE id = :id;

-- name: set_paused
-- Only a change counts: pausing a paused endpoint changes nothing (the caller reads it back).
UPDATE endpoints SET paused = :paused WHERE id = :id AND paused <> :paused;

-- name: paused_urls
-- The URLs with a paused endpoint, each with 1 when every endpoint at it is paused (then a
-- claim skips the URL whole) or 0 when another owner's endpoint there is not (then a claim
-- reads that URL's heads with select_due_heads_of_url_unpaused).
SELECT p.url,
       NOT EXISTS (SELECT 1 FROM endpoints AS e INDEXED BY endpoints_url
                   WHERE e.url = p.url AND e.paused = 0)
FROM (SELECT DISTINCT url FROM endpoints INDEXED BY endpoints_paused WHERE paused = 1) AS p;

-- name: endpoint_backlog
-- Pending deliveries to one endpoint: every pending row is in the queue of one head, so the
-- URL's heads (by the index of heads per URL), then each head's queue by its order.
SELECT COUNT(*)
FROM deliveries AS h INDEXED BY deliveries_due_url
CROSS JOIN deliveries AS d INDEXED BY deliveries_order
  ON d.order_id = h.order_id AND d.seq >= h.seq AND d.url = h.url AND d.status = 'pending'
WHERE h.url = :url AND h.is_head = 1 AND h.status = 'pending'
  AND d.target = :target
  AND (CASE d.target WHEN 'partner' THEN d.partner_id ELSE d.dhan_client_id END) = :owner_id;

-- name: last_attempt
-- The last attempt of the newest delivery to an endpoint that has been attempted: {owner}
-- is the column naming its owner, dhan_client_id for a client's endpoint (newest first by
-- index, until one to this URL) or partner_id for a partner's (partners are few: newest
-- deliveries first).
SELECT delivery_id, number, started_at, latency_ms, status_code, error, response_prefix
FROM attempts
WHERE delivery_id = (
    SELECT id FROM deliveries
    WHERE {owner} = :owner_id AND url = :url AND target = :target
      AND attempts > 0
    ORDER BY seq DESC
    LIMIT 1
)
ORDER BY id DESC
LIMIT 1;


-- Outbox --------------------------------------------------------------------------------

-- name: insert_deliveries
-- One statement for a whole batch: :rows is a JSON array with one array per delivery,
--   [id, dhan_client_id, token_hash, target, partner_id, url, order_id, payload (text),
--    created_at, first]
-- in enqueue order, where first is 1 for the batch's first delivery of its (url, order_id).
-- Such a delivery is the head of its queue unless the queue already has a pending delivery
-- (found among its order's rows, deliveries_order).
-- (One statement, not executemany: the writer thread then hands the GIL to the event loop
-- once per batch rather than once per row.)
-- The payloads go in by insert_payloads, from the same :rows, right after.
INSERT INTO deliveries (id, dhan_client_id, token_hash, target, partner_id, url, order_id,
                        created_at, next_attempt_at, is_head)
SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, r.value ->> 4,
       r.value ->> 5, r.value ->> 6, r.value ->> 8, r.value ->> 8,
       (r.value ->> 9) AND NOT EXISTS (SELECT 1 FROM deliveries AS q INDEXED BY deliveries_order
                                       WHERE q.url = r.value ->> 5
                                         AND q.order_id = r.value ->> 6
                                         AND q.status = 'pending')
FROM json_each(:rows) AS r
ORDER BY r.key;

-- name: insert_payloads
-- The payloads of the deliveries insert_deliveries just inserted from the same :rows, each
-- under its delivery's seq (found by id; CROSS JOIN keeps the rows the outer loop).
INSERT INTO delivery_payloads (seq, payload)
SELECT d.seq, CAST(r.value ->> 7 AS BLOB)
FROM json_each(:rows) AS r
CROSS JOIN deliveries AS d ON d.id = r.value ->> 0
ORDER BY r.key;

-- name: select_due_heads
-- Up to :limit due heads of any URL (a claim that skips none), oldest due first, with the
-- secrets that sign each: its endpoint's (the partner's at that URL for a partner delivery,
-- the client's otherwise). Joins, not subqueries in a RETURNING clause: SQLite 3.40 runs a
-- correlated subquery there as a scan of the whole table.
SELECT d.id, d.seq, d.url, d.order_id, p.payload, e.signing_secret, d.attempts,
       d.round_attempts, :lease_until AS lease_until, d.after_dead, e.previous_secrets
FROM deliveries AS d INDEXED BY deliveries_due
JOIN delivery_payloads AS p ON p.seq = d.seq
LEFT JOIN endpoints AS e
  ON e.kind = (CASE d.target WHEN 'partner' THEN 'partner' ELSE 'client' END)
 AND e.owner_id = (CASE d.target WHEN 'partner' THEN d.partner_id ELSE d.dhan_client_id END)
 AND e.url = d.url
WHERE d.is_head = 1 AND d.status = 'pending'
  AND d.next_attempt_at <= :now
  AND d.lease_until <= :now
ORDER BY d.next_attempt_at, d.seq
LIMIT :limit;

-- name: select_due_head_urls
-- The :scan oldest due heads of any URL, leased or not: (seq, url, lease_until). A claim
-- that skips some URLs reads these first, at a cost bounded by :scan whatever the skipped
-- URLs' backlog; only when they do not hold :limit heads of the other URLs does it ask each
-- URL (select_due_urls).
SELECT seq, url, lease_until FROM deliveries INDEXED BY deliveries_due
WHERE is_head = 1 AND status = 'pending' AND next_attempt_at <= :now
ORDER BY next_attempt_at, seq
LIMIT :scan;

-- name: select_due_urls
-- The URLs that have queue heads (due or not), one index seek each: a claim that skips some
-- URLs, when the skipped URLs' heads crowd the oldest due (select_due_head_urls), asks each
-- of the others for its due heads (select_due_heads_of_url) instead of reading through the
-- skipped URLs' heads, so its cost does not grow with their backlog.
WITH RECURSIVE urls (url) AS (
    SELECT MIN(url) FROM deliveries INDEXED BY deliveries_due_url
    WHERE is_head = 1 AND status = 'pending'
    UNION ALL
    SELECT (SELECT MIN(h.url) FROM deliveries AS h INDEXED BY deliveries_due_url
            WHERE h.is_head = 1 AND h.status = 'pending' AND h.url > urls.url)
    FROM urls
    WHERE urls.url IS NOT NULL
)
SELECT url FROM urls WHERE url IS NOT NULL;

-- name: select_due_heads_of_url
-- Up to :limit due, unleased heads of one URL, oldest due first: (seq, next_attempt_at).
-- (seq is the rowid, the index's last column: no sort.)
SELECT seq, next_attempt_at FROM deliveries INDEXED BY deliveries_due_url
WHERE url = :url AND is_head = 1 AND status = 'pending'
  AND next_attempt_at <= :now
  AND lease_until <= :now
ORDER BY next_attempt_at, seq
LIMIT :limit;

-- name: select_due_heads_of_url_unpaused
-- select_due_heads_of_url for a URL where some endpoints are paused and some are not: only
-- the heads whose endpoint is not paused (its cost grows with the paused ones' heads, a case
-- of two owners sharing one URL).
SELECT d.seq, d.next_attempt_at FROM deliveries AS d INDEXED BY deliveries_due_url
LEFT JOIN endpoints AS e
  ON e.kind = (CASE d.target WHEN 'partner' THEN 'partner' ELSE 'client' END)
 AND e.owner_id = (CASE d.target WHEN 'partner' THEN d.partner_id ELSE d.dhan_client_id END)
 AND e.url = d.url
WHERE d.url = :url AND d.is_head = 1 AND d.status = 'pending'
  AND d.next_attempt_at <= :now
  AND d.lease_until <= :now
  AND NOT coalesce(e.paused, 0)
ORDER BY d.next_attempt_at, d.seq
LIMIT :limit;

-- name: select_heads
-- The heads select_due_heads_of_url picked (:seqs, a JSON array), or a commit's hand-over
-- did, as select_due_heads returns them.
SELECT d.id, d.seq, d.url, d.order_id, p.payload, e.signing_secret, d.attempts,
       d.round_attempts, :lease_until AS lease_until, d.after_dead, e.previous_secrets
FROM json_each(:seqs) AS s
JOIN deliveries AS d ON d.seq = s.value
JOIN delivery_payloads AS p ON p.seq = d.seq
LEFT JOIN endpoints AS e
  ON e.kind = (CASE d.target WHEN 'partner' THEN 'partner' ELSE 'client' END)
 AND e.owner_id = (CASE d.target WHEN 'partner' THEN d.partner_id ELSE d.dhan_client_id END)
 AND e.url = d.url
ORDER BY s.key;

-- name: lease
-- Lease the rows select_due_heads (or a hand-over) found (:seqs, a JSON array), in one
-- statement.
UPDATE deliveries SET lease_until = :lease_until
WHERE seq IN (SELECT value FROM json_each(:seqs));

-- name: release
UPDATE deliveries SET lease_until = 0 WHERE id = :id AND status = 'pending';

-- name: renew_leases
-- The heartbeat: extend to :until the leases in :leases (a JSON array of [id, lease_until])
-- still as the dispatcher holds them; the ids renewed (until 0: a release of them). A lease end read back from JSON text
-- may differ from the stored REAL in its last bit (SQLite's text-to-double conversion is not
-- always correctly rounded), so it matches within 10 microseconds: any other lease end of
-- the row is another claim's (now + lease), never that close to ours. INDEXED BY: left to
-- itself the planner walks every pending row (deliveries_status) and the whole JSON array
-- for each, which took 0.9 s for 400 leases over a 20,000-row backlog.
UPDATE deliveries INDEXED BY deliveries_id
SET lease_until = :until
FROM (SELECT value ->> 0 AS id, value ->> 1 AS held FROM json_each(:leases)) AS h
WHERE deliveries.id = h.id AND deliveries.status = 'pending'
  AND abs(deliveries.lease_until - h.held) < 0.00001
RETURNING deliveries.id;

-- name: insert_attempts
-- One statement for a batch: :rows is a JSON array of
--   [delivery_id, number, started_at, latency_ms, status_code, error, response_prefix].
-- No ORDER BY (it costs a sort): each delivery has at most one attempt in a batch, so the
-- order within a batch says nothing; a delivery's attempts follow each other by id.
INSERT INTO attempts (delivery_id, number, started_at, latency_ms, status_code, error,
                      response_prefix)
SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, r.value ->> 4,
       r.value ->> 5, r.value ->> 6
FROM json_each(:rows) AS r;

-- name: insert_attempts_if_known
-- insert_attempts for the attempts of deliveries whose lease their dispatcher lost: each is
-- logged only if its delivery still exists (it may have been delivered and pruned since).
INSERT INTO attempts (delivery_id, number, started_at, latency_ms, status_code, error,
                      response_prefix)
SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, r.value ->> 4,
       r.value ->> 5, r.value ->> 6
FROM json_each(:rows) AS r
WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = r.value ->> 0);

-- name: finish_deliveries
-- Move a batch of attempted deliveries on, in one statement. :rows is a JSON array of
--   [id, result ('delivered' | 'retry' | 'dead'), status_code, error, next_attempt_at,
--    delivered_at, held]
-- with each id at most once. Delivered and dead rows leave "pending" (and so the indexes of
-- heads), keeping is_head as it was when they were pending: returned, it tells which queues
-- lost their head (promote_queue_heads); every reader of the flag asks for "pending" too.
-- A retry stays the head of its queue, due again at next_attempt_at. A row with a held lease
-- end moves on only while its lease is still that one (as renew_leases matches it); the
-- others are left to their lease's holder. The rows returned are those moved on.
UPDATE deliveries
SET status = CASE r.result WHEN 'retry' THEN deliveries.status ELSE r.result END,
    is_head = CASE WHEN r.result = 'retry' OR deliveries.status = 'pending'
                   THEN deliveries.is_head ELSE 0 END,
    lease_until = 0,
    next_attempt_at = CASE r.result WHEN 'retry' THEN r.next_attempt_at
                                    ELSE deliveries.next_attempt_at END,
    attempts = deliveries.attempts + 1,
    round_attempts = deliveries.round_attempts + 1,
    delivered_at = CASE r.result WHEN 'delivered' THEN r.delivered_at
                                 ELSE deliveries.delivered_at END,
    last_status_code = r.status_code,
    last_error = r.error
FROM (SELECT value ->> 0 AS id, value ->> 1 AS result, value ->> 2 AS status_code,
             value ->> 3 AS error, value ->> 4 AS next_attempt_at, value ->> 5 AS delivered_at,
             value ->> 6 AS held
      FROM json_each(:rows)) AS r
WHERE deliveries.id = r.id
  AND (r.held IS NULL
       OR (deliveries.status = 'pending' AND abs(deliveries.lease_until - r.held) < 0.00001))
RETURNING deliveries.seq, deliveries.id, deliveries.url, deliveries.order_id,
          deliveries.is_head;

-- name: promote_queue_heads
-- After the heads of the queues in :queues (a JSON array of [url, order_id, seq of the head
-- that left]) left "pending": each queue's pending row with the smallest seq becomes its
-- head. A head is its queue's smallest pending seq, so that row comes after the one that
-- left: it is read among its order's rows from there (deliveries_order), not through the
-- order's history. A row that leaves was its queue's only head, so no flag needs clearing
-- here (refresh_queue_head, which also clears, is for replay, where a queue can gain an
-- earlier row). Returns the new heads, for the finish's hand-over (as new_heads does).
UPDATE deliveries SET is_head = 1
WHERE seq IN (SELECT (SELECT MIN(d.seq) FROM deliveries AS d INDEXED BY deliveries_order
                      WHERE d.order_id = q.value ->> 1 AND d.seq > q.value ->> 2
                        AND d.url = q.value ->> 0 AND d.status = 'pending')
              FROM json_each(:queues) AS q)
  AND is_head = 0
RETURNING seq, url, next_attempt_at, lease_until;

-- name: new_heads
-- The heads among the deliveries just inserted (:ids, a JSON array), for the enqueue's
-- hand-over: (id, seq, url, next_attempt_at, lease_until). CROSS JOIN keeps the ids the
-- outer loop (SQLite does not reorder it): else the planner may walk every pending row.
SELECT d.id, d.seq, d.url, d.next_attempt_at, d.lease_until
FROM json_each(:ids) AS i
CROSS JOIN deliveries AS d ON d.id = i.value
WHERE d.is_head = 1 AND d.status = 'pending';

-- name: refresh_queue_head
-- After a row of the queue (url, order_id) left "pending" or came back to it: the pending
-- row with the smallest seq is the head, every other pending row is not. Touches only rows
-- whose flag is wrong. (The queue among its order's rows, as everywhere.)
WITH head AS (
    SELECT MIN(seq) AS seq FROM deliveries INDEXED BY deliveries_order
    WHERE order_id = :order_id AND url = :url AND status = 'pending'
)
UPDATE deliveries INDEXED BY deliveries_order
SET is_head = NOT is_head
WHERE order_id = :order_id AND url = :url AND status = 'pending'
  AND is_head != (seq = (SELECT seq FROM head));

-- name: flag_after_dead
-- The next pending delivery of a queue whose delivery just died.
UPDATE deliveries SET after_dead = 1
WHERE seq = (SELECT MIN(seq) FROM deliveries INDEXED BY deliveries_order
             WHERE order_id = :order_id AND seq > :seq AND url = :url AND status = 'pending');

-- name: oldest_pending
-- When the oldest pending delivery of each URL was created: a queue's oldest is its head, so
-- the heads (by the index of due heads per URL) are all there is to read.
SELECT d.url, MIN(d.created_at) FROM deliveries AS d INDEXED BY deliveries_due_url
WHERE d.is_head = 1 AND d.status = 'pending'
GROUP BY d.url;

-- name: next_due_head
SELECT next_attempt_at FROM deliveries INDEXED BY deliveries_due
WHERE is_head = 1 AND status = 'pending' AND lease_until <= next_attempt_at
ORDER BY next_attempt_at
LIMIT 1;

-- name: next_lease_end
SELECT lease_until FROM deliveries INDEXED BY deliveries_leased
WHERE lease_until > 0 AND is_head = 1 AND status = 'pending' AND lease_until > next_attempt_at
ORDER BY lease_until
LIMIT 1;

-- name: replay
-- {where} is built from the query's filters (see SQLiteStore._where). Deliveries being sent
-- right now (pending and leased) are left alone.
UPDATE deliveries
SET status = 'pending', round_attempts = 0, next_attempt_at = :now, lease_until = 0
WHERE {where}
  AND NOT (status = 'pending' AND lease_until > :now)
RETURNING seq, id, url, order_id;


-- Dashboard sessions --------------------------------------------------------------------

-- name: insert_session
INSERT INTO dashboard_sessions (id_hash, principal, dhan_client_id, token_hash, created_at,
                                expires_at, flash)
VALUES (:id_hash, :principal, :dhan_client_id, :token_hash, :created_at, :expires_at, :flash);

-- name: evict_sessions
-- All but the :keep newest sessions of one principal.
DELETE FROM dashboard_sessions
WHERE principal = :principal
  AND seq NOT IN (SELECT seq FROM dashboard_sessions WHERE principal = :principal
                  ORDER BY seq DESC LIMIT :keep);

-- name: expire_sessions
DELETE FROM dashboard_sessions WHERE expires_at <= :now;

-- name: get_session
SELECT id_hash, principal, dhan_client_id, token_hash, created_at, expires_at, flash
FROM dashboard_sessions
WHERE id_hash = :id_hash AND expires_at > :now;

-- name: end_session
DELETE FROM dashboard_sessions WHERE id_hash = :id_hash;

-- name: set_session_flash
UPDATE dashboard_sessions SET flash = :flash WHERE id_hash = :id_hash;


-- Delivery log --------------------------------------------------------------------------

-- name: get_delivery
SELECT id, seq, dhan_client_id, token_hash, target, partner_id, url, order_id,
       (SELECT p.payload FROM delivery_payloads AS p WHERE p.seq = deliveries.seq),
       status, attempts, created_at, next_attempt_at, delivered_at, last_status_code,
       last_error, after_dead
FROM deliveries
WHERE id = :id;

-- name: list_deliveries
-- {where} from the query's filters, {direction} ASC or DESC.
SELECT id, seq, dhan_client_id, token_hash, target, partner_id, url, order_id,
       (SELECT p.payload FROM delivery_payloads AS p WHERE p.seq = deliveries.seq),
       status, attempts, created_at, next_attempt_at, delivered_at, last_status_code,
       last_error, after_dead
FROM deliveries
WHERE {where}
ORDER BY seq {direction}
LIMIT :limit;

-- name: get_attempts
SELECT delivery_id, number, started_at, latency_ms, status_code, error, response_prefix
FROM attempts
WHERE delivery_id = :delivery_id
ORDER BY id;

-- name: counts
SELECT status, COUNT(*) FROM deliveries GROUP BY status;


-- Idempotent ingest ---------------------------------------------------------------------

-- name: get_idempotency_key
SELECT dhan_client_id, key, request_hash, status, response, created_at
FROM idempotency_keys
WHERE dhan_client_id = :dhan_client_id AND key = :key AND created_at >= :fresh_after;

-- name: put_idempotency_key
-- Replaces an expired record of the same key (a fresh one was found first and answered).
INSERT INTO idempotency_keys (dhan_client_id, key, request_hash, status, response, created_at)
VALUES (:dhan_client_id, :key, :request_hash, :status, :response, :created_at)
ON CONFLICT (dhan_client_id, key) DO UPDATE SET
    request_hash = excluded.request_hash,
    status = excluded.status,
    response = excluded.response,
    created_at = excluded.created_at;


-- Retention -----------------------------------------------------------------------------

-- name: prune_finished
-- Up to :limit finished deliveries past their retention, oldest first: delivered ones
-- delivered before :delivered_before first, then dead ones whose last attempt was due before
-- :dead_before (the room the delivered ones left; a negative LIMIT would mean none).
-- RETURNING each one's id (its attempts go next) and status (what PruneResult counts).
WITH delivered AS (
    SELECT seq FROM deliveries INDEXED BY deliveries_delivered_at
    WHERE status = 'delivered' AND delivered_at < :delivered_before
    ORDER BY delivered_at LIMIT :limit
), dead AS (
    SELECT seq FROM deliveries INDEXED BY deliveries_dead_at
    WHERE status = 'dead' AND next_attempt_at < :dead_before
    ORDER BY next_attempt_at LIMIT max(:limit - (SELECT count(*) FROM delivered), 0)
)
DELETE FROM deliveries WHERE seq IN (SELECT seq FROM delivered UNION ALL SELECT seq FROM dead)
RETURNING id, status;

-- name: prune_attempts
-- The attempts of the deliveries just pruned (:ids, a JSON array).
DELETE FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(:ids));

-- name: prune_idempotency_keys
DELETE FROM idempotency_keys
WHERE (dhan_client_id, key) IN (SELECT dhan_client_id, key FROM idempotency_keys
                                WHERE created_at < :before
                                ORDER BY created_at
                                LIMIT :limit);

-- name: ping
SELECT 1;


-- The operator's view (dashboard) -------------------------------------------------------------

-- name: migration_7
-- Attempts by the time they started: an endpoint's last hour (endpoint_minutes) and recent
-- failures (endpoint_failures) read only that hour's attempts, however long the log is.
CREATE INDEX attempts_started ON attempts (started_at);

-- name: endpoint_minutes
-- An endpoint's attempts in [since, until), per minute: answered 2xx, and not.
SELECT CAST(a.started_at / 60 AS INTEGER) * 60 AS minute,
       SUM(CASE WHEN a.status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END),
       SUM(CASE WHEN a.status_code BETWEEN 200 AND 299 THEN 0 ELSE 1 END)
FROM attempts AS a INDEXED BY attempts_started
JOIN deliveries AS d ON d.id = a.delivery_id
WHERE a.started_at >= :since AND a.started_at < :until
  AND d.url = :url AND d.target = :target
  AND (CASE d.target WHEN 'partner' THEN d.partner_id ELSE d.dhan_client_id END) = :owner_id
GROUP BY minute
ORDER BY minute;

-- name: endpoint_failures
-- An endpoint's attempts since :since without a 2xx answer, newest first.
SELECT a.delivery_id, a.number, a.started_at, a.latency_ms, a.status_code, a.error,
       a.response_prefix
FROM attempts AS a INDEXED BY attempts_started
JOIN deliveries AS d ON d.id = a.delivery_id
WHERE a.started_at >= :since
  AND (a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299)
  AND d.url = :url AND d.target = :target
  AND (CASE d.target WHEN 'partner' THEN d.partner_id ELSE d.dhan_client_id END) = :owner_id
ORDER BY a.started_at DESC, a.id DESC
LIMIT :limit;

-- name: recent_orders
-- The orders of the newest :window deliveries, most recently updated first. With one max()
-- aggregate, SQLite takes the bare column created_at from the row of max(seq): the order's
-- newest delivery, whose payload is read by that seq.
WITH recent AS (
    SELECT seq, order_id, dhan_client_id, status, created_at
    FROM deliveries
    WHERE (:dhan_client_id IS NULL OR dhan_client_id = :dhan_client_id)
      AND (:target IS NULL OR target = :target)
    ORDER BY seq DESC
    LIMIT :window
), orders AS (
    SELECT order_id, dhan_client_id, COUNT(*) AS deliveries,
           SUM(CASE status WHEN 'pending' THEN 1 ELSE 0 END) AS pending,
           SUM(CASE status WHEN 'dead' THEN 1 ELSE 0 END) AS dead,
           created_at, MAX(seq) AS last_seq
    FROM recent
    GROUP BY order_id, dhan_client_id
    ORDER BY last_seq DESC
    LIMIT :limit
)
SELECT o.order_id, o.dhan_client_id, o.deliveries, o.pending, o.dead, o.created_at,
       p.payload, o.last_seq
FROM orders AS o
JOIN delivery_payloads AS p ON p.seq = o.last_seq
ORDER BY o.last_seq DESC;
