//! Opens one store per backend for a test: SQLite in a temp dir always, MariaDB when
//! POSTBAY_TEST_MYSQL_URL (e.g. `mysql://root@127.0.0.1:3306`) is set. Each MariaDB store gets
//! a uniquely named database that is dropped when the guard goes away. With
//! POSTBAY_REQUIRE_PEERS=1 (as in CI) a missing MariaDB fails the test instead of skipping it.

use postbay_store::Store;
use sqlx::Executor;

pub struct TestStore {
    pub name: &'static str,
    pub store: Store,
    /// Where `store` is, for opening a second handle as another replica would.
    #[allow(dead_code)] // not every test file opens a second handle
    pub url: String,
    pub _dir: tempfile::TempDir,
    drop_db: Option<(String, String)>,
}

impl TestStore {
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((server, db)) = &self.drop_db {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(server).await.unwrap();
            pool.execute(format!("DROP DATABASE IF EXISTS `{db}`").as_str())
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

pub async fn stores() -> Vec<TestStore> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("postbay.db").display()
    );
    let store = Store::open(&url, &dir.path().join("mail")).await.unwrap();
    out.push(TestStore {
        name: "sqlite",
        store,
        url,
        _dir: dir,
        drop_db: None,
    });

    match std::env::var("POSTBAY_TEST_MYSQL_URL") {
        Ok(server) => {
            let server = server.trim_end_matches('/').to_string();
            let db = format!(
                "postbay_test_{}",
                ulid::Ulid::new().to_string().to_lowercase()
            );
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&server).await.unwrap();
            pool.execute(format!("CREATE DATABASE `{db}`").as_str())
                .await
                .unwrap();
            pool.close().await;
            let dir = tempfile::tempdir().unwrap();
            let url = format!("{server}/{db}");
            let store = Store::open(&url, &dir.path().join("mail")).await.unwrap();
            out.push(TestStore {
                name: "mariadb",
                store,
                url,
                _dir: dir,
                drop_db: Some((server, db)),
            });
        }
        Err(_) if std::env::var("POSTBAY_REQUIRE_PEERS").as_deref() == Ok("1") => {
            panic!("POSTBAY_REQUIRE_PEERS=1 but POSTBAY_TEST_MYSQL_URL is not set: MariaDB tests cannot run");
        }
        Err(_) => eprintln!("SKIP mariadb: POSTBAY_TEST_MYSQL_URL not set, testing SQLite only"),
    }
    out
}
