//! What every test suite of the workspace sets up the same way: the databases a test runs
//! on (SQLite always; MariaDB too when `POSTBAY_TEST_MYSQL_URL` is set, in a uniquely named
//! database dropped afterwards), seeded domains and mailboxes, and the real client programs
//! tests talk through. With `POSTBAY_REQUIRE_PEERS=1` (as in CI) anything missing fails the
//! test instead of skipping it, and a skip always says why.

pub mod transcript;

use std::path::{Path, PathBuf};

use postbay_store::directory::MailboxSpec;
use postbay_store::{DomainRow, Store};
use sqlx::Executor;

/// Whether a missing peer (MariaDB, a client program) must fail the test (CI) rather than
/// skip it.
pub fn require_peers() -> bool {
    std::env::var("POSTBAY_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// Path of a client program on PATH, or `None` after printing why the test is skipped
/// (panics when peers are required).
pub fn peer(binary: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(binary))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if require_peers() {
            panic!("POSTBAY_REQUIRE_PEERS=1 but {binary} is not installed");
        }
        eprintln!("SKIP: {binary} is not installed");
    }
    found
}

/// One database a test runs on.
#[derive(Clone, Debug)]
pub struct TestDatabase {
    /// `sqlite` or `mariadb`, for assertion messages.
    pub name: &'static str,
    pub url: String,
    /// MariaDB: the server URL and the database to drop.
    drop: Option<(String, String)>,
}

/// The databases to test on: SQLite in `dir`, and a fresh MariaDB database named
/// `postbay_<prefix>_<ulid>` when `POSTBAY_TEST_MYSQL_URL` is set.
pub async fn databases(dir: &Path, prefix: &str) -> Vec<TestDatabase> {
    let mut out = vec![sqlite(dir)];
    if let Some(server) = mariadb_server() {
        out.push(mariadb(&server, prefix).await);
    }
    out
}

/// A SQLite database file in `dir`.
pub fn sqlite(dir: &Path) -> TestDatabase {
    TestDatabase {
        name: "sqlite",
        url: format!("sqlite://{}?mode=rwc", dir.join("postbay.db").display()),
        drop: None,
    }
}

/// The MariaDB server to test against (`POSTBAY_TEST_MYSQL_URL`), or `None` after saying
/// that only SQLite is tested (panics when peers are required).
pub fn mariadb_server() -> Option<String> {
    match std::env::var("POSTBAY_TEST_MYSQL_URL") {
        Ok(server) => Some(server.trim_end_matches('/').to_string()),
        Err(_) if require_peers() => panic!(
            "POSTBAY_REQUIRE_PEERS=1 but POSTBAY_TEST_MYSQL_URL is not set: MariaDB tests cannot run"
        ),
        Err(_) => {
            eprintln!("SKIP mariadb: POSTBAY_TEST_MYSQL_URL not set, testing SQLite only");
            None
        }
    }
}

/// A fresh database `postbay_<prefix>_<ulid>` on the MariaDB `server`.
pub async fn mariadb(server: &str, prefix: &str) -> TestDatabase {
    let db = format!(
        "postbay_{prefix}_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(server)
        .await
        .unwrap_or_else(|e| panic!("MariaDB at {server} does not answer: {e}"));
    pool.execute(format!("CREATE DATABASE `{db}`").as_str())
        .await
        .unwrap_or_else(|e| panic!("creating test database {db} on {server}: {e}"));
    pool.close().await;
    TestDatabase {
        name: "mariadb",
        url: format!("{server}/{db}"),
        drop: Some((server.to_string(), db)),
    }
}

impl TestDatabase {
    /// `(server URL, database name)` when this is a MariaDB database.
    pub fn mariadb_name(&self) -> Option<(&str, &str)> {
        self.drop.as_ref().map(|(s, d)| (s.as_str(), d.as_str()))
    }

    /// Drops the MariaDB database (SQLite's file goes with its temporary directory).
    pub async fn cleanup(&self) {
        if let Some((server, db)) = &self.drop {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(server)
                .await
                .unwrap_or_else(|e| panic!("MariaDB at {server} does not answer: {e}"));
            pool.execute(format!("DROP DATABASE IF EXISTS `{db}`").as_str())
                .await
                .unwrap_or_else(|e| panic!("dropping test database {db} on {server}: {e}"));
            pool.close().await;
        }
    }
}

/// Declares `domain` (enabled, no catch-all).
pub async fn seed_domain(store: &Store, domain: &str) {
    store
        .put_domain(&DomainRow {
            name: domain.into(),
            catch_all: None,
            enabled: true,
            owner: None,
        })
        .await
        .unwrap_or_else(|e| panic!("seeding domain {domain}: {e}"));
}

/// Creates an enabled mailbox without quota; `password_hash` in Dovecot form
/// (`{PLAIN}secret` keeps tests fast).
pub async fn seed_mailbox(store: &Store, address: &str, password_hash: &str) {
    store
        .put_mailbox(&MailboxSpec {
            address: address.into(),
            password_hash: password_hash.into(),
            quota_bytes: 0,
            enabled: true,
            owner: None,
        })
        .await
        .unwrap_or_else(|e| panic!("seeding mailbox {address}: {e}"));
}

/// A store opened on one [`TestDatabase`], with its own mail volume.
pub struct TestStore {
    /// `sqlite` or `mariadb`, for assertion messages.
    pub name: &'static str,
    pub store: Store,
    /// Where `store` is, for opening a second handle as another replica would.
    pub url: String,
    /// The mail volume (`<dir>/mail`).
    pub dir: tempfile::TempDir,
    pub database: TestDatabase,
    /// The SQLite file's directory, shared by the stores of one [`stores`] call.
    _db_dir: std::sync::Arc<tempfile::TempDir>,
}

impl TestStore {
    /// Closes the store and drops its MariaDB database.
    pub async fn cleanup(self) {
        self.store.close().await;
        self.database.cleanup().await;
    }
}

/// One migrated, empty store per test database (see [`databases`]).
pub async fn stores(prefix: &str) -> Vec<TestStore> {
    let db_dir = std::sync::Arc::new(tempfile::tempdir().expect("a temporary directory"));
    let mut out = Vec::new();
    for database in databases(db_dir.path(), prefix).await {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&database.url, &dir.path().join("mail"))
            .await
            .unwrap_or_else(|e| panic!("opening the {} test store: {e}", database.name));
        out.push(TestStore {
            name: database.name,
            store,
            url: database.url.clone(),
            dir,
            database,
            _db_dir: db_dir.clone(),
        });
    }
    out
}
