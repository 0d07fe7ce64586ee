-- IMAP subscriptions as their own list (RFC 3501 §6.3.6, RFC 9051 §6.3.7): a name may be
-- subscribed whether or not a folder of that name exists, and stays subscribed when its folder
-- is deleted. Keep in step with ../mysql/0008_subscriptions.sql. folders.subscribed, which
-- this replaces, is no longer read or written (kept so older replicas still run during a
-- rolling upgrade).
CREATE TABLE subscriptions (
    mailbox_id BIGINT NOT NULL,
    name       VARCHAR(255) NOT NULL,
    PRIMARY KEY (mailbox_id, name)
);
INSERT INTO subscriptions (mailbox_id, name) SELECT mailbox_id, name FROM folders WHERE subscribed = 1;
