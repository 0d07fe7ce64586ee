-- Rate limit counters of the filter (`filter.ratelimits`), shared by every `postbay filter`
-- replica. Keep in step with ../mysql/0010_ratelimit.sql.
-- bucket: SHA-256 hex of (rule kind and period, key); window_start: the start of a fixed
-- window of the rule's period (Unix seconds, a multiple of the period); count: messages
-- admitted in that window; expires: when the row no longer counts (the end of the next
-- window, since the sliding estimate weighs the previous window).
CREATE TABLE ratelimit (
    bucket TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    expires INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX ratelimit_expires ON ratelimit (expires);
