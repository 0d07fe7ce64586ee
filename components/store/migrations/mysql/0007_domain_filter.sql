-- Per-domain spam filter overrides (MailDomain spec.spamFilter), as the reconcile core writes
-- them and `postbay filter` reads them. Keep in step with ../sqlite/0007_domain_filter.sql.
CREATE TABLE domain_filter (
    domain VARCHAR(253) NOT NULL PRIMARY KEY,
    -- VARCHAR, not TEXT: sqlx's Any driver reads every MySQL TEXT as a BLOB. The reconcile
    -- core refuses a spamFilter longer than this.
    settings VARCHAR(8000) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
