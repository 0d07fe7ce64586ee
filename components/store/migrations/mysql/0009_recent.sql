-- IMAP4rev1 \Recent (RFC 3501 §2.3.2): messages with a UID above recent_uid have not been
-- announced to any session yet; the first session to SELECT the folder (on any replica)
-- raises it and sees them as \Recent. Keep in step with ../sqlite/0009_recent.sql. What is
-- there now is not new to anyone.
ALTER TABLE folders ADD COLUMN recent_uid BIGINT NOT NULL DEFAULT 0;
UPDATE folders SET recent_uid = uidnext - 1;
