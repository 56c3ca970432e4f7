-- The receiver's SQLite file (dhan_postback.receiver.store). Migrations bring the schema from
-- version n - 1 to n (PRAGMA user_version); every other block is one statement the store runs
-- by name. Placeholders in braces ({where}, {marks}, {rows}) are filled by the store with
-- filter terms and runs of "?" (never with values), so that a few prepared statements serve
-- every batch size.


-- name: connection_settings
-- temp_store: every batch runs under a savepoint, whose journal of the pages it changes spills
-- to a temporary file past 64 KiB (about 16 pages, a batch of some twenty updates): opened,
-- written, closed and unlinked on every such commit. In memory it costs none of those calls,
-- and it holds no more than the pages one batch changes.
PRAGMA busy_timeout = 30000;
PRAGMA synchronous = FULL;
PRAGMA temp_store = MEMORY;

-- name: file_settings
-- Once per open, before migrating: WAL lets readers read while the writer writes.
PRAGMA journal_mode = WAL;

-- name: reader_settings
PRAGMA query_only = 1;


-- name: migration_1
CREATE TABLE IF NOT EXISTS updates (
    seq            INTEGER PRIMARY KEY,
    dedupe_key     TEXT    NOT NULL UNIQUE,
    webhook_id     TEXT,
    order_id       TEXT    NOT NULL,
    leg_name       TEXT    NOT NULL DEFAULT '',
    client_id      TEXT,
    status         TEXT,
    update_time    TEXT,
    filled_qty     INTEGER NOT NULL,
    unknown_values TEXT,
    applied        INTEGER NOT NULL,
    handled        INTEGER NOT NULL,
    received_at    REAL    NOT NULL,
    body           BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_order ON updates (order_id, seq);
CREATE INDEX IF NOT EXISTS updates_unhandled ON updates (seq) WHERE handled = 0;

CREATE TABLE IF NOT EXISTS orders (
    order_id     TEXT    NOT NULL,
    leg_name     TEXT    NOT NULL DEFAULT '',
    client_id    TEXT,
    status       TEXT,
    update_time  TEXT    NOT NULL,
    filled_qty   INTEGER NOT NULL,
    quantity     INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    seen_seq     INTEGER NOT NULL,
    update_count INTEGER NOT NULL,
    PRIMARY KEY (order_id, leg_name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status);
CREATE INDEX IF NOT EXISTS orders_by_client ON orders (client_id);
CREATE INDEX IF NOT EXISTS orders_by_activity ON orders (seen_seq);

CREATE TABLE IF NOT EXISTS handler_failures (
    seq        INTEGER NOT NULL,
    handler    TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    next_at    REAL,
    last_error TEXT    NOT NULL,
    failed_at  REAL    NOT NULL,
    dead       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (seq, handler)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS handler_failures_due ON handler_failures (next_at) WHERE dead = 0;

CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received_at REAL    NOT NULL,
    reason      TEXT    NOT NULL,
    headers     TEXT    NOT NULL,
    body_prefix BLOB    NOT NULL,
    body_size   INTEGER NOT NULL
);


-- Recording a batch (receiver.store._RecordOp) -------------------------------------------

-- name: known_keys
SELECT json_group_array(dedupe_key) FROM updates WHERE dedupe_key IN ({marks})

-- name: book_rows
-- The current rows of the orders concerned, as one JSON array (one row to hand over).
SELECT json_group_array(json_array(order_id, leg_name, client_id, status, update_time,
    filled_qty, quantity, last_seq, seen_seq, update_count)) FROM orders WHERE order_id IN ({marks})

-- name: next_seq
SELECT coalesce(max(seq), 0) + 1 FROM updates

-- name: batch_state
-- known_keys, book_rows and next_seq in one statement, for a batch small enough.
SELECT ({known_keys}), ({book_rows}), ({next_seq})

-- name: insert_updates
INSERT INTO updates (seq, dedupe_key, webhook_id, order_id, leg_name, client_id, status,
    update_time, filled_qty, unknown_values, applied, handled, received_at, body)
VALUES {rows}

-- name: upsert_orders
INSERT INTO orders (order_id, leg_name, client_id, status, update_time, filled_qty, quantity,
    last_seq, seen_seq, update_count)
VALUES {rows}
ON CONFLICT (order_id, leg_name) DO UPDATE SET client_id = excluded.client_id,
    status = excluded.status, update_time = excluded.update_time,
    filled_qty = excluded.filled_qty, quantity = excluded.quantity,
    last_seq = excluded.last_seq, seen_seq = excluded.seen_seq,
    update_count = excluded.update_count


-- Quarantine and handler outcomes ---------------------------------------------------------

-- name: quarantine
INSERT INTO quarantine (received_at, reason, headers, body_prefix, body_size)
VALUES (?, ?, ?, ?, ?)

-- name: trim_quarantine
DELETE FROM quarantine WHERE id <= ?

-- name: mark_handled
UPDATE updates SET handled = 1 WHERE seq = ?

-- name: handler_failed
INSERT INTO handler_failures (seq, handler, attempts, next_at, last_error, failed_at, dead)
VALUES (?, ?, 1, ?, ?, ?, ?)
ON CONFLICT (seq, handler) DO UPDATE SET attempts = attempts + 1, next_at = excluded.next_at,
    last_error = excluded.last_error, failed_at = excluded.failed_at, dead = excluded.dead

-- name: handler_retried
DELETE FROM handler_failures WHERE seq = ? AND handler = ?

-- name: handler_failed_again
UPDATE handler_failures SET attempts = attempts + 1, next_at = ?, last_error = ?,
    failed_at = ?, dead = ?
WHERE seq = ? AND handler = ?


-- Reads -----------------------------------------------------------------------------------

-- name: orders
-- The book's rows with the body of the update that set each; {where} filters, {order} sorts.
SELECT o.order_id, o.leg_name, o.client_id, o.status, o.update_time, o.filled_qty,
    o.quantity, o.last_seq, o.update_count, u.body
FROM orders o JOIN updates u ON u.seq = o.last_seq
WHERE {where} ORDER BY {order} LIMIT ?

-- name: updates
-- Unique updates as they arrived; {where} filters.
SELECT seq, dedupe_key, webhook_id, order_id, leg_name, client_id, status, update_time,
    filled_qty, applied, handled, received_at, body, unknown_values
FROM updates WHERE {where} ORDER BY seq LIMIT ?

-- name: handler_failures
SELECT seq, handler, attempts, next_at, last_error, failed_at, dead
FROM handler_failures WHERE {where} ORDER BY {order} LIMIT ?

-- name: next_handler_retry
SELECT min(next_at) FROM handler_failures WHERE dead = 0

-- name: quarantined
SELECT id, received_at, reason, headers, body_prefix, body_size
FROM quarantine ORDER BY id DESC LIMIT ?

-- name: orders_by_status
SELECT coalesce(status, ''), count(*) FROM orders GROUP BY status ORDER BY 1

-- name: counts
SELECT (SELECT count(*) FROM updates), (SELECT count(*) FROM quarantine),
    (SELECT count(*) FROM updates WHERE handled = 0),
    (SELECT count(*) FROM handler_failures WHERE dead = 0),
    (SELECT count(*) FROM handler_failures WHERE dead = 1)
