-- Greylisting triplets of the filter, shared by every `postbay filter` replica. Keep in step
-- with ../sqlite/0006_greylist.sql.
CREATE TABLE greylist (
    triplet CHAR(64) NOT NULL PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    passed BIGINT NOT NULL DEFAULT 0,
    last_seen BIGINT NOT NULL,
    KEY greylist_last_seen (last_seen)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;
