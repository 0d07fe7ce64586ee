-- IMAP support. Keep in step with ../sqlite/0002_imap.sql.
-- uidvalidity_floor: the highest UIDVALIDITY a deleted or renamed-away folder of the mailbox
-- had, so a folder re-created under the same name always gets a larger one (RFC 9051 §2.3.1.1).
ALTER TABLE mailboxes ADD COLUMN uidvalidity_floor BIGINT NOT NULL DEFAULT 0;
-- Change detection by modseq (other sessions, other replicas) must not scan whole folders.
CREATE INDEX messages_folder_modseq ON messages (folder_id, modseq);
CREATE INDEX expunged_folder_modseq ON expunged (folder_id, modseq);
