//! One store per test database: postbay-testkit's (SQLite always, MariaDB when
//! POSTBAY_TEST_MYSQL_URL is set, required with POSTBAY_REQUIRE_PEERS=1).

pub use postbay_testkit::TestStore;

pub async fn stores() -> Vec<TestStore> {
    postbay_testkit::stores("test").await
}
