-- The filter's Bayes classifier. Keep in step with ../sqlite/0005_bayes.sql, which says
-- what each table means.
CREATE TABLE bayes_tokens (
    token BIGINT NOT NULL PRIMARY KEY,
    spam BIGINT NOT NULL DEFAULT 0,
    ham BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE bayes_learned (
    message_key VARCHAR(191) NOT NULL PRIMARY KEY,
    spam BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE bayes_totals (
    id INT NOT NULL PRIMARY KEY,
    spam BIGINT NOT NULL DEFAULT 0,
    ham BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT INTO bayes_totals (id, spam, ham) VALUES (1, 0, 0);
