-- Postbay schema, SQLite dialect. Keep in step with ../mysql/0001_init.sql.
-- Integers are 64-bit everywhere; times are Unix seconds.

CREATE TABLE domains (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        VARCHAR(253) NOT NULL UNIQUE,
    catch_all   VARCHAR(320) NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    owner       VARCHAR(255) NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE mailboxes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
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
);
CREATE INDEX mailboxes_domain ON mailboxes (domain);

CREATE TABLE aliases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    address     VARCHAR(320) NOT NULL,
    destination VARCHAR(320) NOT NULL,
    owner       VARCHAR(255) NULL,
    UNIQUE (address, destination)
);

CREATE TABLE dkim_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    domain      VARCHAR(253) NOT NULL,
    selector    VARCHAR(63) NOT NULL,
    algorithm   VARCHAR(32) NOT NULL,
    public_key  VARCHAR(2048) NOT NULL,
    private_key_ref VARCHAR(512) NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    owner       VARCHAR(255) NULL,
    UNIQUE (domain, selector)
);

CREATE TABLE folders (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id     BIGINT NOT NULL,
    name           VARCHAR(255) NOT NULL,
    special_use    VARCHAR(32) NULL,
    subscribed     INTEGER NOT NULL DEFAULT 1,
    uidvalidity    BIGINT NOT NULL,
    uidnext        BIGINT NOT NULL DEFAULT 1,
    highest_modseq BIGINT NOT NULL DEFAULT 1,
    UNIQUE (mailbox_id, name)
);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
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
);

CREATE TABLE expunged (
    folder_id BIGINT NOT NULL,
    uid       BIGINT NOT NULL,
    modseq    BIGINT NOT NULL,
    PRIMARY KEY (folder_id, uid)
);
