-- Sending (submission). Keep in step with ../sqlite/0004_sending.sql, which says what each
-- column means.
ALTER TABLE mailboxes
    ADD COLUMN scram_sha256 VARCHAR(512) NULL,
    ADD COLUMN send_as VARCHAR(4000) NULL,
    ADD COLUMN max_messages_per_hour BIGINT NULL,
    ADD COLUMN max_recipients_per_hour BIGINT NULL;
