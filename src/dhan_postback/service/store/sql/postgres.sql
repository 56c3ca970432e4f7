-- The PostgreSQL store's SQL, one named query per operation (loaded by store/queries.py).
--
-- Conventions:
--   * times are seconds since the epoch (double precision), as the Store Protocol passes them;
--   * a delivery's queue is (url, order_id); its lock key is
--     hashtextextended(url || chr(31) || order_id, 0), taken with pg_advisory_xact_lock by every
--     transaction that adds to a queue, removes its head or re-opens a delivery in it;
--   * is_head is true for exactly one pending delivery per queue (the lowest seq) and false
--     for every other row, kept so under those locks: a new delivery starts false, a finish
--     that moves a delivery out of pending clears it, refresh_queue_heads promotes the next
--     head, and a replay (which can re-open a delivery before the head) unsets the queue's
--     head first; claim reads only heads, through a small partial index;
--   * %(name)s are query parameters; {order} and {after} in list_deliveries are filled from a
--     fixed list (ASC/DESC, >/<) by the store, never from input.


-- Schema ------------------------------------------------------------------------------------

-- name: lock_migrations
-- Several nodes may start at once: one migrates, the others wait here and find it done.
SELECT pg_advisory_xact_lock(hashtextextended('dhan_postback:migrations', 0));

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM schema_version;

-- name: record_schema_version
INSERT INTO schema_version (version) VALUES (%(version)s);

-- name: migration_1
CREATE TABLE tokens (
    token_hash     text PRIMARY KEY,
    dhan_client_id text NOT NULL,
    postback_url   text,
    partner_id     text,
    signing_secret text NOT NULL,
    created_at     double precision NOT NULL,
    expires_at     double precision NOT NULL,
    revoked_at     double precision
);

CREATE TABLE partners (
    partner_id     text PRIMARY KEY,
    postback_url   text NOT NULL,
    signing_secret text NOT NULL,
    created_at     double precision NOT NULL
);

-- fillfactor leaves room on each page so that a claim (which changes only lease_until, an
-- unindexed column) is a HOT update: no index is touched on the hottest write.
CREATE TABLE deliveries (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text NOT NULL UNIQUE,
    dhan_client_id   text NOT NULL,
    token_hash       text NOT NULL,
    target           text NOT NULL CHECK (target IN ('token', 'partner')),
    partner_id       text,
    url              text NOT NULL,
    order_id         text NOT NULL,
    payload          bytea NOT NULL,
    created_at       double precision NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead')),
    is_head          boolean NOT NULL DEFAULT false,
    attempts         integer NOT NULL DEFAULT 0,
    round_attempts   integer NOT NULL DEFAULT 0,
    next_attempt_at  double precision NOT NULL,
    lease_until      double precision NOT NULL DEFAULT 0,
    delivered_at     double precision,
    last_status_code integer,
    last_error       text,
    after_dead       boolean NOT NULL DEFAULT false
) WITH (fillfactor = 80);

-- What claim scans: due heads, oldest due first.
CREATE INDEX deliveries_claimable ON deliveries (next_attempt_at, seq)
    WHERE status = 'pending' AND is_head;
-- Each queue's pending deliveries in order: finding the next head.
CREATE INDEX deliveries_queue ON deliveries (url, order_id, seq) WHERE status = 'pending';
-- The delivery log's usual filters, newest first.
CREATE INDEX deliveries_client ON deliveries (dhan_client_id, seq);
CREATE INDEX deliveries_order ON deliveries (order_id, seq);
-- Pending and dead deliveries, by seq; delivered ones (most rows) stay out of it, so a finish
-- that delivers writes one index entry fewer, and a scan of seq finds delivered ones anyway.
CREATE INDEX deliveries_unfinished ON deliveries (seq) WHERE status <> 'delivered';

CREATE TABLE attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     text NOT NULL,
    number          integer NOT NULL,
    started_at      double precision NOT NULL,
    latency_ms      double precision NOT NULL,
    status_code     integer,
    error           text,
    response_prefix text
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, id);


-- name: migration_2
-- Due heads by URL: lets a claim that skips some URLs (a full lane, an open breaker) read the
-- other URLs' heads without stepping over the skipped ones' backlog (claim_picks_skipping).
CREATE INDEX deliveries_claimable_url ON deliveries (url, next_attempt_at, seq)
    WHERE status = 'pending' AND is_head;

-- name: migration_3
-- Dashboard sessions, shared by every node and kept across restarts. Only the SHA-256 of a
-- session id is stored; the id itself lives in the browser's cookie. The cap is per
-- principal (admin, or one token): dashboard_sessions_principal finds a principal's oldest.
CREATE TABLE dashboard_sessions (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- eviction order
    id_hash         text NOT NULL UNIQUE,
    principal       text NOT NULL,
    dhan_client_id  text,
    token_hash      text,
    created_at      double precision NOT NULL,
    expires_at      double precision NOT NULL,
    flash           text NOT NULL DEFAULT ''
);
CREATE INDEX dashboard_sessions_principal ON dashboard_sessions (principal, seq);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);


-- name: migration_4
-- Idempotent ingest: the first answer to each (client, Idempotency-Key), kept for the
-- idempotency window. Retention: finished deliveries by the time that ages them (delivered
-- ones by delivered_at, dead ones by the due time of their last attempt), so that a pruning
-- batch reads only what it deletes. (A delivered row now costs one index entry again, the
-- price of pruning it without reading the whole table.)
CREATE TABLE idempotency_keys (
    dhan_client_id text NOT NULL,
    key            text NOT NULL,
    request_hash   text NOT NULL,
    status         integer NOT NULL,
    response       bytea NOT NULL,
    created_at     double precision NOT NULL,
    PRIMARY KEY (dhan_client_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX deliveries_delivered_at ON deliveries (delivered_at) WHERE status = 'delivered';
CREATE INDEX deliveries_dead_at ON deliveries (next_attempt_at) WHERE status = 'dead';

-- name: migration_5
-- Endpoints own the signing secrets, so that a token renewed every day keeps its receiver's
-- secret. One endpoint per owner and URL: a client's Postback URL, or a partner's URL.
-- previous_secrets is a JSON array of [secret, until]: secrets retired by a rotation that
-- still sign, after the current one, until then. paused is for the pause contract.
CREATE TABLE endpoints (
    id                text PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('client', 'partner')),
    owner_id          text NOT NULL,
    url               text NOT NULL,
    signing_secret    text NOT NULL,
    previous_secrets  jsonb NOT NULL DEFAULT '[]',
    secret_rotated_at double precision,
    created_at        double precision NOT NULL,
    paused            boolean NOT NULL DEFAULT false,
    UNIQUE (kind, owner_id, url)
);

-- Each client's URL becomes an endpoint with the secret of its newest token. The secrets of
-- its older tokens keep signing (second) for 24 hours, so that a receiver still configured
-- with one of them does not break on the upgrade.
INSERT INTO endpoints (id, kind, owner_id, url, signing_secret, previous_secrets, created_at)
SELECT 'ep_' || left(replace(gen_random_uuid()::text, '-', ''), 26), 'client', g.dhan_client_id,
       g.postback_url, g.secrets[1],
       coalesce((SELECT jsonb_agg(jsonb_build_array(old, extract(epoch FROM now()) + 86400))
                 FROM unnest(g.secrets[2:]) AS old), '[]'),
       g.created_at
FROM (SELECT dhan_client_id, postback_url, min(created_at) AS created_at,
             array_agg(signing_secret ORDER BY created_at DESC, token_hash DESC) AS secrets
      FROM tokens WHERE postback_url IS NOT NULL
      GROUP BY dhan_client_id, postback_url) AS g;

-- Each partner's URL becomes an endpoint with the partner's secret; so do the URLs it had
-- before (deliveries to them may still be pending or replayed), as they were signed so far.
INSERT INTO endpoints (id, kind, owner_id, url, signing_secret, created_at)
SELECT 'ep_' || left(replace(gen_random_uuid()::text, '-', ''), 26), 'partner', partner_id,
       postback_url, signing_secret, created_at
FROM partners;

INSERT INTO endpoints (id, kind, owner_id, url, signing_secret, created_at)
SELECT 'ep_' || left(replace(gen_random_uuid()::text, '-', ''), 26), 'partner', d.partner_id, d.url,
       p.signing_secret, min(d.created_at)
FROM deliveries AS d JOIN partners AS p ON p.partner_id = d.partner_id
WHERE d.target = 'partner'
GROUP BY d.partner_id, d.url, p.signing_secret
ON CONFLICT (kind, owner_id, url) DO NOTHING;

ALTER TABLE tokens DROP COLUMN signing_secret;
ALTER TABLE partners DROP COLUMN signing_secret;

-- name: migration_6
-- Paused endpoints: a claim asks which URLs have one (endpoints_paused, empty when none is,
-- so the question costs nothing then), and whether another endpoint at such a URL is not
-- paused (endpoints_url), to leave a fully paused URL out of the claim at no cost per head.
CREATE INDEX endpoints_paused ON endpoints (url) WHERE paused;
CREATE INDEX endpoints_url ON endpoints (url, paused);

-- Health -------------------------------------------------------------------------------------

-- name: ping
SELECT 1;


-- Dashboard sessions -------------------------------------------------------------------------

-- name: insert_session
INSERT INTO dashboard_sessions (id_hash, principal, dhan_client_id, token_hash, created_at,
                                expires_at, flash)
VALUES (%(id_hash)s, %(principal)s, %(dhan_client_id)s, %(token_hash)s, %(created_at)s,
        %(expires_at)s, %(flash)s);

-- name: evict_sessions
-- All but the "keep" newest sessions of one principal.
DELETE FROM dashboard_sessions
WHERE principal = %(principal)s
  AND seq NOT IN (SELECT seq FROM dashboard_sessions WHERE principal = %(principal)s
                  ORDER BY seq DESC LIMIT %(keep)s);

-- name: expire_sessions
DELETE FROM dashboard_sessions WHERE expires_at <= %(now)s;

-- name: get_session
SELECT id_hash, principal, dhan_client_id, token_hash, created_at, expires_at, flash
FROM dashboard_sessions
WHERE id_hash = %(id_hash)s AND expires_at > %(now)s;

-- name: end_session
DELETE FROM dashboard_sessions WHERE id_hash = %(id_hash)s;

-- name: set_session_flash
UPDATE dashboard_sessions SET flash = %(flash)s WHERE id_hash = %(id_hash)s;


-- Registry -----------------------------------------------------------------------------------

-- name: insert_token
INSERT INTO tokens (token_hash, dhan_client_id, postback_url, partner_id,
                    created_at, expires_at, revoked_at)
VALUES (%(token_hash)s, %(dhan_client_id)s, %(postback_url)s, %(partner_id)s,
        %(created_at)s, %(expires_at)s, %(revoked_at)s);

-- name: get_token
-- With the id of the endpoint its postbacks go to (its client's, at its URL).
SELECT t.token_hash, t.dhan_client_id, t.postback_url, t.partner_id,
       t.created_at, t.expires_at, t.revoked_at, e.id
FROM tokens AS t
LEFT JOIN endpoints AS e
  ON e.kind = 'client' AND e.owner_id = t.dhan_client_id AND e.url = t.postback_url
WHERE t.token_hash = %(token_hash)s;

-- name: list_tokens
SELECT t.token_hash, t.dhan_client_id, t.postback_url, t.partner_id,
       t.created_at, t.expires_at, t.revoked_at, e.id
FROM tokens AS t
LEFT JOIN endpoints AS e
  ON e.kind = 'client' AND e.owner_id = t.dhan_client_id AND e.url = t.postback_url
WHERE (%(dhan_client_id)s::text IS NULL OR t.dhan_client_id = %(dhan_client_id)s::text)
ORDER BY t.created_at DESC, t.token_hash DESC;

-- name: revoke_token
UPDATE tokens SET revoked_at = coalesce(revoked_at, %(at)s)
WHERE token_hash = %(token_hash)s
RETURNING 1;

-- name: migration_8
-- Revoked tokens by when: every node asks for the latest each second (revoked_since), to drop
-- them from its token cache, however many tokens the table has kept.
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- name: revoked_since
SELECT token_hash FROM tokens WHERE revoked_at >= %(since)s;

-- name: put_partner
INSERT INTO partners (partner_id, postback_url, created_at)
VALUES (%(partner_id)s, %(postback_url)s, %(created_at)s)
ON CONFLICT (partner_id) DO UPDATE
SET postback_url = excluded.postback_url,
    created_at = excluded.created_at;

-- name: get_partner
SELECT partner_id, postback_url, created_at
FROM partners WHERE partner_id = %(partner_id)s;

-- name: insert_endpoint
-- Nothing when the owner already has an endpoint at this URL (get_endpoint_of finds it).
INSERT INTO endpoints (id, kind, owner_id, url, signing_secret, previous_secrets,
                       secret_rotated_at, created_at, paused)
VALUES (%(id)s, %(kind)s, %(owner_id)s, %(url)s, %(signing_secret)s,
        %(previous_secrets)s::jsonb, %(secret_rotated_at)s, %(created_at)s, %(paused)s)
ON CONFLICT (kind, owner_id, url) DO NOTHING;

-- name: get_endpoint_of
SELECT id, kind, owner_id, url, signing_secret, created_at, previous_secrets,
       secret_rotated_at, paused
FROM endpoints
WHERE kind = %(kind)s AND owner_id = %(owner_id)s AND url = %(url)s;

-- name: get_endpoint
SELECT id, kind, owner_id, url, signing_secret, created_at, previous_secrets,
       secret_rotated_at, paused
FROM endpoints WHERE id = %(id)s;

-- name: lock_endpoint
SELECT id, kind, owner_id, url, signing_secret, created_at, previous_secrets,
       secret_rotated_at, paused
FROM endpoints WHERE id = %(id)s
FOR UPDATE;

-- name: list_endpoints
SELECT id, kind, owner_id, url, signing_secret, created_at, previous_secrets,
       secret_rotated_at, paused
FROM endpoints
ORDER BY created_at, id;

-- name: rotate_secret
UPDATE endpoints
SET signing_secret = %(signing_secret)s, previous_secrets = %(previous_secrets)s::jsonb,
    secret_rotated_at = %(secret_rotated_at)s
WHERE id = %(id)s;

-- name: set_paused
-- Only a change counts, so that of two nodes pausing at once one sees the change: the other
-- waits for its row lock, then finds nothing to change.
UPDATE endpoints SET paused = %(paused)s WHERE id = %(id)s AND paused <> %(paused)s
RETURNING id;

-- name: notify_outbox
-- Deliveries are claimable (a resumed endpoint's, new heads a hand-over left): wake every node.
SELECT pg_notify(%(channel)s, '');

-- name: paused_urls
-- The URLs with a paused endpoint, each with true when every endpoint at it is paused (then
-- a claim skips the URL whole) or false when another owner's endpoint there is not (then
-- the claim filters that URL's heads by their endpoint, see claim_picks_skipping).
SELECT p.url, NOT EXISTS (SELECT 1 FROM endpoints AS e WHERE e.url = p.url AND NOT e.paused)
FROM (SELECT DISTINCT url FROM endpoints WHERE paused) AS p;

-- name: endpoint_backlog
-- Pending deliveries to one endpoint (through the index of pending rows by URL).
SELECT count(*) FROM deliveries
WHERE url = %(url)s AND status = 'pending' AND target = %(target)s
  AND (CASE target WHEN 'partner' THEN partner_id ELSE dhan_client_id END) = %(owner_id)s;

-- name: last_attempt
-- The last attempt of the newest delivery to an endpoint that has been attempted: {owner}
-- is the column naming its owner, dhan_client_id for a client's endpoint (newest first by
-- index, until one to this URL) or partner_id for a partner's (partners are few: newest
-- deliveries first).
SELECT delivery_id, number, started_at, latency_ms, status_code, error, response_prefix
FROM attempts
WHERE delivery_id = (
    SELECT id FROM deliveries
    WHERE {owner} = %(owner_id)s AND url = %(url)s AND target = %(target)s
      AND attempts > 0
    ORDER BY seq DESC
    LIMIT 1
)
ORDER BY id DESC
LIMIT 1;


-- Outbox: queue locks and heads ---------------------------------------------------------------

-- name: lock_new_queues
-- Before enqueue: lock the queues the new deliveries join, in key order (no deadlock).
SELECT pg_advisory_xact_lock(k.key)
FROM (
    SELECT DISTINCT hashtextextended(q.url || chr(31) || q.order_id, 0) AS key
    FROM unnest(%(urls)s::text[], %(order_ids)s::text[]) AS q (url, order_id)
    ORDER BY key
) AS k;

-- name: lock_queues
-- Before finish or replay: lock the queues of these deliveries, in key order.
SELECT pg_advisory_xact_lock(k.key)
FROM (
    SELECT DISTINCT hashtextextended(d.url || chr(31) || d.order_id, 0) AS key
    FROM deliveries AS d
    WHERE d.id = ANY(%(ids)s::text[])
    ORDER BY key
) AS k;

-- name: queue_heads
-- CTEs "queues" (those of the deliveries %(ids)s) and "heads" (the lowest pending seq of each,
-- whether or not it is marked is_head yet), for the statements with a queue_heads
-- placeholder. Each queue's head is looked up on its own (LATERAL ...
-- LIMIT 1 cannot be flattened into a join): one deliveries_queue probe per queue, whatever the
-- planner believes of the table. As a join, a plan made from stale statistics merge-joined the
-- queues with every due head of the URL, reading queues x heads index entries (2.7 s a finish
-- over a 6,000-row backlog).
queues AS (
    SELECT DISTINCT url, order_id FROM deliveries WHERE id = ANY(%(ids)s::text[])
), heads AS (
    SELECT head.seq
    FROM queues AS q
    CROSS JOIN LATERAL (
        SELECT p.seq
        FROM deliveries AS p
        WHERE p.url = q.url AND p.order_id = q.order_id AND p.status = 'pending'
        ORDER BY p.seq
        LIMIT 1
    ) AS head
)

-- name: refresh_queue_heads
-- Make the lowest pending seq of each queue of these deliveries its head (one index probe per
-- queue). The store fills in the placeholder below with notify_if_promoted (wake the
-- dispatchers, NOTIFY sent at commit, when a delivery became claimable) or promoted_seqs
-- (the new heads: a commit that hands them over wakes the nodes only for what it leaves).
WITH {queue_heads}, promoted AS (
    UPDATE deliveries AS d
    SET is_head = true
    FROM heads
    WHERE d.seq = heads.seq AND NOT d.is_head
    RETURNING d.seq
)
{then}

-- name: notify_if_promoted
SELECT pg_notify(%(channel)s, '') FROM promoted LIMIT 1;

-- name: promoted_seqs
SELECT seq FROM promoted;

-- name: unset_queue_heads
-- Before a replay re-opens deliveries: a re-opened delivery may come before its queue's
-- current head, so the head is chosen again (refresh_queue_heads) from scratch.
UPDATE deliveries AS d
SET is_head = false
FROM (SELECT DISTINCT url, order_id FROM deliveries WHERE id = ANY(%(ids)s::text[])) AS q
WHERE d.url = q.url AND d.order_id = q.order_id AND d.status = 'pending' AND d.is_head;


-- Outbox -------------------------------------------------------------------------------------

-- name: insert_deliveries
-- One statement for the whole batch; seq follows the batch's order.
INSERT INTO deliveries (id, dhan_client_id, token_hash, target, partner_id, url, order_id,
                        payload, created_at, next_attempt_at)
SELECT n.id, n.dhan_client_id, n.token_hash, n.target, n.partner_id, n.url, n.order_id,
       n.payload, n.created_at, n.created_at
FROM unnest(%(ids)s::text[], %(dhan_client_ids)s::text[], %(token_hashes)s::text[],
            %(targets)s::text[], %(partner_ids)s::text[], %(urls)s::text[],
            %(order_ids)s::text[], %(payloads)s::bytea[], %(created_ats)s::float8[])
     WITH ORDINALITY
     AS n (id, dhan_client_id, token_hash, target, partner_id, url, order_id, payload,
           created_at, position)
ORDER BY n.position;

-- name: claim
-- Lease up to `limit` due heads; rows another node is claiming right now are skipped, not
-- waited for. (A commit's hand-over leases the same way, with hand_over_picks.) The secrets are the delivery's endpoint's: the partner's at that URL for a
-- partner delivery, else its client's.
-- The store fills in the picks placeholder below with claim_picks (no URL skipped) or
-- claim_picks_skipping: CTEs ending in "picked", the seqs to lease, locked.
WITH {picks}, claimed AS (
    UPDATE deliveries AS d
    SET lease_until = %(lease_until)s
    FROM picked
    WHERE d.seq = picked.seq
    RETURNING d.id, d.seq, d.url, d.order_id, d.payload, d.target, d.dhan_client_id, d.partner_id,
              d.attempts, d.round_attempts, d.lease_until, d.after_dead, d.next_attempt_at
)
SELECT c.id, c.seq, c.url, c.order_id, c.payload, e.signing_secret,
       c.attempts, c.round_attempts, c.lease_until, c.after_dead, e.previous_secrets
FROM claimed AS c
LEFT JOIN endpoints AS e
  ON e.kind = (CASE c.target WHEN 'partner' THEN 'partner' ELSE 'client' END)
 AND e.owner_id = (CASE c.target WHEN 'partner' THEN c.partner_id ELSE c.dhan_client_id END)
 AND e.url = c.url
ORDER BY c.next_attempt_at, c.seq;

-- name: claim_picks
-- Due heads of any URL, oldest due first, from the global due index.
picked AS MATERIALIZED (
    SELECT d.seq
    FROM deliveries AS d
    WHERE d.status = 'pending' AND d.is_head
      AND d.next_attempt_at <= %(now)s AND d.lease_until <= %(now)s
    ORDER BY d.next_attempt_at, d.seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)

-- name: claim_picks_skipping
-- Due heads of every URL but %(skip_urls)s, oldest due first, at a cost that does not grow
-- with the skipped URLs' backlog (a full lane, an open breaker): the URLs with heads, one
-- index seek each (a loose index scan), then each other URL's oldest due heads by index.
-- A row filter on the global due index would read through every due head of a skipped URL.
-- The store adds every URL whose endpoints are all paused to %(skip_urls)s; at a URL in
-- %(mixed_urls)s (some endpoints paused, some not) only heads of unpaused endpoints count.
-- The candidates are read unlocked, so "picked" checks them again as it locks them.
RECURSIVE head_urls (url) AS (
    (SELECT d.url FROM deliveries AS d
     WHERE d.status = 'pending' AND d.is_head
     ORDER BY d.url
     LIMIT 1)
    UNION ALL
    SELECT (SELECT d.url FROM deliveries AS d
            WHERE d.status = 'pending' AND d.is_head AND d.url > head_urls.url
            ORDER BY d.url
            LIMIT 1)
    FROM head_urls
    WHERE head_urls.url IS NOT NULL
), candidates AS (
    SELECT c.seq, c.next_attempt_at
    FROM head_urls AS u
    CROSS JOIN LATERAL (
        SELECT d.seq, d.next_attempt_at
        FROM deliveries AS d
        WHERE d.status = 'pending' AND d.is_head AND d.url = u.url
          AND d.next_attempt_at <= %(now)s AND d.lease_until <= %(now)s
          AND (u.url <> ALL(%(mixed_urls)s::text[]) OR NOT EXISTS (
                SELECT 1 FROM endpoints AS e
                WHERE e.paused AND e.url = d.url
                  AND e.kind = (CASE d.target WHEN 'partner' THEN 'partner' ELSE 'client' END)
                  AND e.owner_id = (CASE d.target WHEN 'partner' THEN d.partner_id
                                                  ELSE d.dhan_client_id END)))
        ORDER BY d.next_attempt_at, d.seq
        LIMIT %(limit)s
    ) AS c
    WHERE u.url IS NOT NULL AND u.url <> ALL(%(skip_urls)s::text[])
    ORDER BY c.next_attempt_at, c.seq
    LIMIT %(limit)s
), picked AS MATERIALIZED (
    SELECT d.seq
    FROM deliveries AS d
    WHERE d.seq IN (SELECT seq FROM candidates)
      AND d.status = 'pending' AND d.is_head AND d.lease_until <= %(now)s
    ORDER BY d.next_attempt_at, d.seq
    FOR UPDATE SKIP LOCKED
)

-- name: hand_over_picks
-- A commit's hand-over to its own node's dispatcher (enqueue, finish): the due, unleased heads
-- of the queues of %(ids)s (the new deliveries, or the finished ones) that a claim on the same
-- terms could take, oldest due first. An endpoint paused at a URL keeps every head of that URL
-- out (the claim, which looks closer, takes another owner's heads there). The transaction
-- holds these queues' locks, so a head is locked at once, unless another node's claim is
-- leasing it right now: skipped, as a claim skips it.
{queue_heads}, picked AS MATERIALIZED (
    SELECT d.seq
    FROM heads
    JOIN deliveries AS d ON d.seq = heads.seq
    WHERE d.status = 'pending' AND d.is_head AND d.next_attempt_at <= %(now)s AND d.lease_until <= %(now)s
      AND d.url <> ALL(%(skip_urls)s::text[])
      AND NOT EXISTS (SELECT 1 FROM endpoints AS e WHERE e.paused AND e.url = d.url)
    ORDER BY d.next_attempt_at, d.seq
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)

-- name: oldest_pending
-- When the oldest pending delivery of each URL was created: a queue's oldest is its head, so
-- the heads (deliveries_claimable_url) are all there is to read.
SELECT url, min(created_at) FROM deliveries
WHERE status = 'pending' AND is_head
GROUP BY url;

-- name: insert_attempts
-- Only for deliveries that exist: a late report from a node whose lease ran out may come
-- after another node delivered the delivery and retention pruned it.
INSERT INTO attempts (delivery_id, number, started_at, latency_ms, status_code, error,
                      response_prefix)
SELECT a.*
FROM unnest(%(delivery_ids)s::text[], %(numbers)s::int[], %(started_ats)s::float8[],
            %(latencies)s::float8[], %(status_codes)s::int[], %(errors)s::text[],
            %(prefixes)s::text[])
     AS a (delivery_id, number, started_at, latency_ms, status_code, error, response_prefix)
WHERE EXISTS (SELECT 1 FROM deliveries AS d WHERE d.id = a.delivery_id);

-- name: finish
-- Move each attempted delivery on. Only a pending delivery changes status: a late report
-- from a node whose lease ran out cannot undo what another node already finished. A row
-- with a held lease end moves on only while its lease is still that one (as renew_leases
-- matches it): the others are left to their lease's holder. The ids moved on.
UPDATE deliveries AS d
SET attempts = d.attempts + 1,
    round_attempts = d.round_attempts + 1,
    last_status_code = o.status_code,
    last_error = o.error,
    lease_until = 0,
    status = CASE WHEN d.status = 'pending' AND o.result <> 'retry' THEN o.result
                  ELSE d.status END,
    delivered_at = CASE WHEN d.status = 'pending' AND o.result = 'delivered'
                        THEN o.delivered_at ELSE d.delivered_at END,
    next_attempt_at = CASE WHEN o.result = 'retry' THEN o.next_attempt_at
                           ELSE d.next_attempt_at END,
    is_head = d.is_head AND (d.status <> 'pending' OR o.result = 'retry')
FROM unnest(%(ids)s::text[], %(results)s::text[], %(status_codes)s::int[],
            %(errors)s::text[], %(delivered_ats)s::float8[], %(next_attempt_ats)s::float8[],
            %(helds)s::float8[])
     AS o (id, result, status_code, error, delivered_at, next_attempt_at, held)
WHERE d.id = o.id
  AND (o.held IS NULL OR (d.status = 'pending' AND d.lease_until = o.held))
RETURNING d.id;

-- name: flag_after_dead
-- The delivery that follows a dead one in its queue is flagged, so the gap can be seen.
UPDATE deliveries AS d
SET after_dead = true
FROM (
    SELECT DISTINCT ON (dead.seq) successor.seq
    FROM deliveries AS dead
    JOIN deliveries AS successor
      ON successor.url = dead.url AND successor.order_id = dead.order_id
     AND successor.status = 'pending' AND successor.seq > dead.seq
    WHERE dead.id = ANY(%(ids)s::text[]) AND dead.status = 'dead'
    ORDER BY dead.seq, successor.seq
) AS next
WHERE d.seq = next.seq;

-- name: release
-- Each id is looked up on its own (LATERAL ... LIMIT 1 is not flattened into a join), and the
-- row updated is matched to it by join conditions alone: a `status = 'pending'` of its own
-- lets a plan from stale statistics read every pending row (deliveries_queue) instead.
WITH released AS (
    UPDATE deliveries AS d
    SET lease_until = 0
    FROM unnest(%(ids)s::text[]) AS r (id)
    CROSS JOIN LATERAL (
        SELECT x.seq, x.status FROM deliveries AS x
        WHERE x.id = r.id AND x.status = 'pending'
        LIMIT 1
    ) AS hit
    WHERE d.seq = hit.seq AND d.status = hit.status
    RETURNING 1
)
SELECT pg_notify(%(channel)s, '') FROM released LIMIT 1;

-- name: renew_leases
-- The heartbeat: extend to %(until)s the leases still as the dispatcher holds them (each id
-- with its lease end as last handed out); the ids renewed. Until 0, a release of them. A row another node is claiming
-- right now is waited for, then checked again: its new lease end no longer matches.
-- Rows are looked up as release does: one id at a time, the row updated matched by joins.
UPDATE deliveries AS d
SET lease_until = %(until)s
FROM unnest(%(ids)s::text[], %(held)s::float8[]) AS h (id, lease_until)
CROSS JOIN LATERAL (
    SELECT x.seq, x.status FROM deliveries AS x
    WHERE x.id = h.id AND x.status = 'pending'
    LIMIT 1
) AS hit
WHERE d.seq = hit.seq AND d.status = hit.status AND d.lease_until = h.lease_until
RETURNING d.id;

-- name: next_due
-- The earliest max(next_attempt_at, lease_until) over queue heads (a delivery queued behind
-- another is not due before its turn, and the commit that gives it its turn wakes the
-- dispatchers), in two index range scans that each read only the heads in flight:
-- `free` is the earliest head not leased past its due time; any head due before it is in
-- flight, so only those can end their lease earlier.
WITH free AS (
    SELECT next_attempt_at AS due
    FROM deliveries
    WHERE status = 'pending' AND is_head AND lease_until <= next_attempt_at
    ORDER BY next_attempt_at
    LIMIT 1
)
SELECT least(
    (SELECT due FROM free),
    (SELECT min(lease_until)
     FROM deliveries
     WHERE status = 'pending' AND is_head AND lease_until > next_attempt_at
       AND next_attempt_at < coalesce((SELECT due FROM free), 'infinity'))
);


-- name: replay
-- Re-open the matching deliveries (found with list_deliveries) that are not in flight.
UPDATE deliveries
SET status = 'pending', round_attempts = 0, next_attempt_at = %(now)s, lease_until = 0
WHERE id = ANY(%(ids)s::text[])
  AND NOT (status = 'pending' AND lease_until > %(now)s)
RETURNING id;


-- Delivery log -------------------------------------------------------------------------------

-- name: get_delivery
SELECT id, seq, dhan_client_id, token_hash, target, partner_id, url, order_id, payload,
       status, attempts, created_at, next_attempt_at, delivered_at, last_status_code,
       last_error, after_dead
FROM deliveries WHERE id = %(id)s;

-- name: get_attempts
SELECT delivery_id, number, started_at, latency_ms, status_code, error, response_prefix
FROM attempts WHERE delivery_id = %(delivery_id)s ORDER BY id;

-- name: list_deliveries
-- Unset filters are NULL; run unprepared, so the planner folds them away per call.
SELECT id, seq, dhan_client_id, token_hash, target, partner_id, url, order_id, payload,
       status, attempts, created_at, next_attempt_at, delivered_at, last_status_code,
       last_error, after_dead
FROM deliveries
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(order_id)s::text IS NULL OR order_id = %(order_id)s::text)
  AND (%(dhan_client_id)s::text IS NULL OR dhan_client_id = %(dhan_client_id)s::text)
  AND (%(target)s::text IS NULL OR target = %(target)s::text)
  AND (%(partner_id)s::text IS NULL OR partner_id = %(partner_id)s::text)
  AND (%(since)s::float8 IS NULL OR created_at >= %(since)s::float8)
  AND (%(until)s::float8 IS NULL OR created_at < %(until)s::float8)
  AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
  AND (%(cursor)s::bigint IS NULL OR seq {after} %(cursor)s::bigint)
ORDER BY seq {order}
LIMIT %(limit)s;

-- name: counts
SELECT status, count(*) FROM deliveries GROUP BY status;


-- Idempotent ingest --------------------------------------------------------------------------

-- name: lock_idempotency_key
-- Two requests with the same key (on any nodes) take turns: the second then finds the
-- first's record, committed, in the next statement's fresh snapshot.
SELECT pg_advisory_xact_lock(
    hashtextextended('dhan_postback:idempotency' || chr(31) || %(dhan_client_id)s
                     || chr(31) || %(key)s, 0));

-- name: get_idempotency_key
SELECT dhan_client_id, key, request_hash, status, response, created_at
FROM idempotency_keys
WHERE dhan_client_id = %(dhan_client_id)s AND key = %(key)s
  AND created_at >= %(fresh_after)s;

-- name: put_idempotency_key
-- Replaces an expired record of the same key (a fresh one was found first and answered).
INSERT INTO idempotency_keys (dhan_client_id, key, request_hash, status, response, created_at)
VALUES (%(dhan_client_id)s, %(key)s, %(request_hash)s, %(status)s, %(response)s,
        %(created_at)s)
ON CONFLICT (dhan_client_id, key) DO UPDATE
SET request_hash = excluded.request_hash,
    status = excluded.status,
    response = excluded.response,
    created_at = excluded.created_at;


-- Retention ----------------------------------------------------------------------------------

-- name: try_lock_pruning
-- One node prunes at a time: a node that does not get the lock deletes nothing this batch.
SELECT pg_try_advisory_xact_lock(hashtextextended('dhan_postback:pruning', 0));

-- name: prune_finished
-- Up to %(limit)s finished deliveries past their retention, oldest first, with their
-- attempts: delivered ones delivered before %(delivered_before)s first, then dead ones whose
-- last attempt was due before %(dead_before)s. Rows locked elsewhere are skipped; the DELETE
-- checks the status again, so a delivery replayed meanwhile (pending again) stays.
WITH delivered AS (
    SELECT seq FROM deliveries
    WHERE status = 'delivered' AND delivered_at < %(delivered_before)s
    ORDER BY delivered_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), dead AS (
    SELECT seq FROM deliveries
    WHERE status = 'dead' AND next_attempt_at < %(dead_before)s
    ORDER BY next_attempt_at
    LIMIT greatest(%(limit)s - (SELECT count(*) FROM delivered), 0)
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM deliveries
    WHERE seq IN (SELECT seq FROM delivered UNION ALL SELECT seq FROM dead)
      AND status <> 'pending'
    RETURNING id, status
), attempts_gone AS (
    DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone)
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone WHERE status = 'delivered'),
       (SELECT count(*) FROM gone WHERE status = 'dead'),
       (SELECT count(*) FROM attempts_gone);

-- name: prune_idempotency_keys
WITH gone AS (
    DELETE FROM idempotency_keys
    WHERE (dhan_client_id, key) IN (SELECT dhan_client_id, key FROM idempotency_keys
                                    WHERE created_at < %(before)s
                                    ORDER BY created_at
                                    LIMIT %(limit)s)
    RETURNING 1
)
SELECT count(*) FROM gone;


-- The operator's view (dashboard) -------------------------------------------------------------

-- name: migration_7
-- Attempts by the time they started: an endpoint's last hour (endpoint_minutes) and recent
-- failures (endpoint_failures) read only that hour's attempts, however long the log is.
CREATE INDEX attempts_started ON attempts (started_at);

-- name: endpoint_minutes
-- An endpoint's attempts in [since, until), per minute: answered 2xx, and not.
SELECT floor(a.started_at / 60) * 60 AS minute,
       count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299),
       count(*) FILTER (WHERE a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299)
FROM attempts AS a
JOIN deliveries AS d ON d.id = a.delivery_id
WHERE a.started_at >= %(since)s AND a.started_at < %(until)s
  AND d.url = %(url)s AND d.target = %(target)s
  AND (CASE d.target WHEN 'partner' THEN d.partner_id ELSE d.dhan_client_id END) = %(owner_id)s
GROUP BY minute
ORDER BY minute;

-- name: endpoint_failures
-- An endpoint's attempts since %(since)s without a 2xx answer, newest first.
SELECT a.delivery_id, a.number, a.started_at, a.latency_ms, a.status_code, a.error,
       a.response_prefix
FROM attempts AS a
JOIN deliveries AS d ON d.id = a.delivery_id
WHERE a.started_at >= %(since)s
  AND (a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299)
  AND d.url = %(url)s AND d.target = %(target)s
  AND (CASE d.target WHEN 'partner' THEN d.partner_id ELSE d.dhan_client_id END) = %(owner_id)s
ORDER BY a.started_at DESC, a.id DESC
LIMIT %(limit)s;

-- name: recent_orders
-- The orders of the newest %(window)s deliveries, most recently updated first, each with its
-- newest delivery's time and payload.
WITH recent AS (
    SELECT seq, order_id, dhan_client_id, status, created_at, payload
    FROM deliveries
    WHERE (%(dhan_client_id)s::text IS NULL OR dhan_client_id = %(dhan_client_id)s::text)
      AND (%(target)s::text IS NULL OR target = %(target)s::text)
    ORDER BY seq DESC
    LIMIT %(window)s
)
SELECT order_id, dhan_client_id, count(*),
       count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'dead'),
       (array_agg(created_at ORDER BY seq DESC))[1],
       (array_agg(payload ORDER BY seq DESC))[1],
       max(seq) AS last_seq
FROM recent
GROUP BY order_id, dhan_client_id
ORDER BY last_seq DESC
LIMIT %(limit)s;
