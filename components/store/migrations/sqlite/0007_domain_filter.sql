-- Per-domain spam filter overrides (MailDomain spec.spamFilter), as the reconcile core writes
-- them and `postbay filter` reads them. Keep in step with ../mysql/0007_domain_filter.sql.
-- settings: the spamFilter object as JSON ({"addHeader":..,"reject":..,"scores":{..}}).
CREATE TABLE domain_filter (
    domain TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
