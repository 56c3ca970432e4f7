-- The relay's SQLite log (dhan_postback.relay.log). Migrations bring the schema from version
-- n - 1 to n (PRAGMA user_version); every other block is one statement the log runs by name.

-- name: connection_settings
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;

-- name: migration_1
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    change_key TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    update_time TEXT NOT NULL,
    payload BLOB NOT NULL,
    received_at REAL NOT NULL,
    acked_at REAL,
    refused INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS updates_pending ON updates (seq) WHERE acked_at IS NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    reason TEXT NOT NULL,
    frame TEXT NOT NULL
);

-- name: migration_2
-- The last state taken per order and leg, from the websocket or the order book: what a new
-- update must be newer than (dhan_postback.relay.progress).
CREATE TABLE order_states (
    client_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    leg TEXT NOT NULL,
    update_time TEXT NOT NULL,
    status TEXT NOT NULL,
    filled_qty INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price REAL NOT NULL,
    trigger_price REAL NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (client_id, order_id, leg)
) WITHOUT ROWID;
CREATE INDEX order_states_age ON order_states (recorded_at);

-- name: all_payloads
SELECT payload FROM updates ORDER BY seq

-- name: known_change
SELECT 1 FROM updates WHERE change_key = ?

-- name: order_state
SELECT update_time, status, filled_qty, quantity, price, trigger_price
FROM order_states WHERE client_id = ? AND order_id = ? AND leg = ?

-- name: put_order_state
INSERT INTO order_states (
    client_id, order_id, leg, update_time, status, filled_qty, quantity, price, trigger_price,
    recorded_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (client_id, order_id, leg) DO UPDATE SET
    update_time = excluded.update_time,
    status = excluded.status,
    filled_qty = excluded.filled_qty,
    quantity = excluded.quantity,
    price = excluded.price,
    trigger_price = excluded.trigger_price,
    recorded_at = excluded.recorded_at

-- name: insert_update
INSERT INTO updates (change_key, order_id, update_time, payload, received_at)
VALUES (?, ?, ?, ?, ?)

-- name: pending
SELECT seq, order_id, update_time, payload FROM updates
WHERE acked_at IS NULL ORDER BY seq LIMIT ?

-- name: ack
UPDATE updates SET acked_at = ? WHERE seq = ? AND acked_at IS NULL

-- name: refuse
UPDATE updates SET acked_at = ?, refused = 1 WHERE seq = ?

-- name: insert_dead_letter
INSERT INTO dead_letters (at, reason, frame) VALUES (?, ?, ?)

-- name: dead_letters
SELECT id, at, reason, frame FROM dead_letters ORDER BY id DESC LIMIT ?

-- name: prune_updates
DELETE FROM updates WHERE acked_at IS NOT NULL AND seq <= (
    SELECT seq FROM updates WHERE acked_at IS NOT NULL
    ORDER BY seq DESC LIMIT 1 OFFSET ?)

-- name: prune_dead_letters
DELETE FROM dead_letters WHERE id <= (
    SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?)

-- name: prune_order_states
DELETE FROM order_states WHERE recorded_at < ?

-- name: counts
SELECT
    (SELECT count(*) FROM updates WHERE acked_at IS NULL),
    (SELECT count(*) FROM updates WHERE acked_at IS NOT NULL AND refused = 0),
    (SELECT count(*) FROM updates WHERE refused = 1),
    (SELECT count(*) FROM dead_letters)
