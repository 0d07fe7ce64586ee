-- Postbay schema, MariaDB/MySQL dialect. Keep in step with ../sqlite/0001_init.sql.
-- Integers are 64-bit everywhere; times are Unix seconds.

CREATE TABLE domains (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(253) NOT NULL UNIQUE,
    catch_all   VARCHAR(320) NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    owner       VARCHAR(255) NULL,
    created_at  BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE mailboxes (
    id            BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    address       VARCHAR(320) NOT NULL UNIQUE,
    domain        VARCHAR(253) NOT NULL,
    local_part    VARCHAR(64) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    quota_bytes   BIGINT NOT NULL DEFAULT 0,
    used_bytes    BIGINT NOT NULL DEFAULT 0,
    enabled       INTEGER NOT NULL DEFAULT 1,
    home          VARCHAR(600) NOT NULL,
    owner         VARCHAR(255) NULL,
    created_at    BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX mailboxes_domain ON mailboxes (domain);

CREATE TABLE aliases (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    address     VARCHAR(320) NOT NULL,
    destination VARCHAR(320) NOT NULL,
    owner       VARCHAR(255) NULL,
    UNIQUE (address, destination)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE dkim_keys (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    domain      VARCHAR(253) NOT NULL,
    selector    VARCHAR(63) NOT NULL,
    algorithm   VARCHAR(32) NOT NULL,
    public_key  VARCHAR(2048) NOT NULL,
    private_key_ref VARCHAR(512) NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    owner       VARCHAR(255) NULL,
    UNIQUE (domain, selector)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE folders (
    id             BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    mailbox_id     BIGINT NOT NULL,
    name           VARCHAR(255) NOT NULL,
    special_use    VARCHAR(32) NULL,
    subscribed     INTEGER NOT NULL DEFAULT 1,
    uidvalidity    BIGINT NOT NULL,
    uidnext        BIGINT NOT NULL DEFAULT 1,
    highest_modseq BIGINT NOT NULL DEFAULT 1,
    UNIQUE (mailbox_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE messages (
    id            BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    folder_id     BIGINT NOT NULL,
    uid           BIGINT NOT NULL,
    modseq        BIGINT NOT NULL,
    blob_path     VARCHAR(255) NOT NULL,
    size          BIGINT NOT NULL,
    internal_date BIGINT NOT NULL,
    flags         VARCHAR(1024) NOT NULL DEFAULT '',
    delivery_key  VARCHAR(255) NULL,
    UNIQUE (folder_id, uid),
    UNIQUE (folder_id, delivery_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE expunged (
    folder_id BIGINT NOT NULL,
    uid       BIGINT NOT NULL,
    modseq    BIGINT NOT NULL,
    PRIMARY KEY (folder_id, uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
