//! Socket-level tests: real 127.0.0.1 connections, real TLS handshakes.

mod listener;
mod proxy;
mod tls;
