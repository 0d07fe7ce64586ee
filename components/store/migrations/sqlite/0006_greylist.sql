-- Greylisting triplets of the filter, shared by every `postbay filter` replica. Keep in step
-- with ../mysql/0006_greylist.sql.
-- triplet: SHA-256 hex of (client network, sender, recipients); first_seen: its first
-- attempt; passed: 1 once a retry came after the delay; last_seen: its latest attempt,
-- after which the entry lives `filter.greylist_lifetime`.
CREATE TABLE greylist (
    triplet TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    passed INTEGER NOT NULL DEFAULT 0,
    last_seen INTEGER NOT NULL
);
CREATE INDEX greylist_last_seen ON greylist (last_seen);
