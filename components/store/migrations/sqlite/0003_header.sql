-- Header cache. Keep in step with ../mysql/0003_header.sql.
-- header: the message's header section (up to the blank line), copied from the blob when it is
-- stored, so ENVELOPE and header fetches for a message list need no file read. NULL when the
-- header is larger than the cache takes, and for messages stored before this column: those
-- are read from their blob.
ALTER TABLE messages ADD COLUMN header BLOB NULL;
