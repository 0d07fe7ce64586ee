-- IMAP NOTIFY (RFC 5465 §5.4, §5.5): a per-mailbox counter that every CREATE, DELETE,
-- RENAME, SUBSCRIBE and UNSUBSCRIBE raises in its own transaction, so the change feed can
-- tell a session on any replica that the mailbox's list of folders or subscriptions moved.
-- Keep in step with ../sqlite/0011_list_version.sql.
ALTER TABLE mailboxes ADD COLUMN list_version BIGINT NOT NULL DEFAULT 0;
