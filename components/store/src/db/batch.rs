//! Whole write transactions in one round trip, for SQLite.
//!
//! Every statement sent through sqlx's SQLite driver is a round trip to the connection's
//! worker thread, and on a busy machine each cost ~100 µs of waiting for a CPU — with the
//! process's write gate held (see [`super::write`]). A STORE took five such trips (BEGIN,
//! bump, read, update, COMMIT). SQLite runs several statements from one query string, binding
//! the `?` parameters across them in order, so the hot writes (delivery, STORE, expunge) are
//! sent as one `BEGIN IMMEDIATE; …; COMMIT` batch whose data dependencies are expressed in
//! SQL (`changes()`, sub-selects, `RETURNING`). What they must read first is read before the
//! gate, and the batch checks it did not change (compare-and-set on `modseq`).
//!
//! MariaDB keeps the statement-by-statement transactions (no multi-statement prepared
//! queries there, and its round trips do not hold a process-wide gate).

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::Any;

/// A value bound to one `?`.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    OptText(Option<String>),
    OptBlob(Option<Vec<u8>>),
}

/// SQL text and its arguments, built together so each `?` has its value.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    sql: String,
    args: Vec<Arg>,
}

impl Batch {
    /// A batch that runs inside `BEGIN IMMEDIATE … COMMIT`.
    pub(crate) fn transaction() -> Batch {
        let mut batch = Batch::default();
        batch.sql.push_str("BEGIN IMMEDIATE;\n");
        batch
    }

    /// Appends one statement; `args` fill its `?` marks in order.
    pub(crate) fn push(&mut self, statement: &str, args: impl IntoIterator<Item = Arg>) {
        let before = self.args.len();
        self.args.extend(args);
        debug_assert_eq!(
            statement.matches('?').count(),
            self.args.len() - before,
            "one argument per ? in {statement}"
        );
        self.sql.push_str(statement);
        self.sql.push_str(";\n");
    }

    pub(crate) fn commit(mut self) -> Batch {
        self.sql.push_str("COMMIT;");
        self
    }

    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut query = sqlx::query(&self.sql);
        for arg in &self.args {
            query = match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_str()),
                Arg::OptText(v) => query.bind(v.as_deref()),
                Arg::OptBlob(v) => query.bind(v.as_deref()),
            };
        }
        query
    }
}

/// Rows a batch returned (from its `RETURNING` clauses), in statement order.
pub(crate) type Returned = Vec<AnyRow>;
