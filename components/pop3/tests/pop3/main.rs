//! Integration tests of the POP3 server, in one binary so the harness compiles once.

mod clients;
mod common;
mod concurrency;
mod memory;
mod protocol;
