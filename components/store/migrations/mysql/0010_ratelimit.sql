-- Rate limit counters of the filter (`filter.ratelimits`), shared by every `postbay filter`
-- replica. Keep in step with ../sqlite/0010_ratelimit.sql.
CREATE TABLE ratelimit (
    -- VARCHAR, not TEXT: sqlx's Any driver reads every MySQL TEXT as a BLOB.
    bucket VARCHAR(64) NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    expires BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start),
    KEY ratelimit_expires (expires)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
