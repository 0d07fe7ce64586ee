-- The filter's Bayes classifier, shared by every `postbay filter` replica. Keep in step
-- with ../mysql/0005_bayes.sql.
-- bayes_tokens: per token (FNV-1a 64 of the word, shifted to 63 bits so it fits a signed
--   integer; decision 39), how many learnt spam and ham messages carried it.
-- bayes_learned: each learnt message once, by key (its Message-ID, else a hash of its
--   tokens; SHA-256 hex when longer than 190 bytes), with the class it was learnt as.
-- bayes_totals: the one row of message counts per class.
CREATE TABLE bayes_tokens (
    token INTEGER PRIMARY KEY,
    spam INTEGER NOT NULL DEFAULT 0,
    ham INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE bayes_learned (
    message_key TEXT PRIMARY KEY,
    spam INTEGER NOT NULL
);
CREATE TABLE bayes_totals (
    id INTEGER PRIMARY KEY,
    spam INTEGER NOT NULL DEFAULT 0,
    ham INTEGER NOT NULL DEFAULT 0
);
INSERT INTO bayes_totals (id, spam, ham) VALUES (1, 0, 0);
