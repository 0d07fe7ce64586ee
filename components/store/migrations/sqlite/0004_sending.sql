-- Sending (submission). Keep in step with ../mysql/0004_sending.sql.
-- scram_sha256: the SCRAM-SHA-256 credential in Dovecot's form ({SCRAM-SHA-256}iter,salt,
--   StoredKey,ServerKey), derived from the same password as password_hash, so SCRAM logins
--   work while password_hash keeps the slow scheme. NULL: no SCRAM for this mailbox.
-- send_as: further addresses the user may send as (space-separated; `@domain` for a whole
--   domain), besides the address itself and the aliases that forward to it.
-- max_messages_per_hour, max_recipients_per_hour: sending limits; NULL = the server default.
ALTER TABLE mailboxes ADD COLUMN scram_sha256 TEXT NULL;
ALTER TABLE mailboxes ADD COLUMN send_as TEXT NULL;
ALTER TABLE mailboxes ADD COLUMN max_messages_per_hour INTEGER NULL;
ALTER TABLE mailboxes ADD COLUMN max_recipients_per_hour INTEGER NULL;
