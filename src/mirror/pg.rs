//! PostgreSQL plumbing the mirror's readers and writers share: connecting (no TLS, with a
//! timeout), quoting identifiers, and checking that the mapped tables and columns exist.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::sync::{ObjectKind, SyncMapping};

/// A client and the task driving its connection; dropping it closes the connection.
pub struct Connected {
    /// The connected client.
    pub client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects without TLS (the mirror is reached on a private network or through a proxy);
/// gives up after 10 s so a wrong host fails instead of hanging.
pub async fn connect(url: &str) -> Result<Connected, String> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "connecting timed out after 10 s".to_owned())?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("database connection: {e}");
        }
    });
    Ok(Connected { client, task })
}

/// PostgreSQL's own message with its detail, which names the column or constraint.
pub(crate) fn error_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}

/// `"name"` with inner quotes doubled: a table name from the mapping is never SQL.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What the database lacks of the mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableProblem {
    /// A table the mapping (or the applier) needs does not exist.
    #[error("table {table} does not exist (the sync mapping expects it)")]
    TableMissing {
        /// `schema.table`, possibly with a hint on how to create it.
        table: String,
    },
    /// A table exists without some of the mapped columns.
    #[error("table {table} lacks the column(s) {columns} of the sync mapping")]
    ColumnsMissing {
        /// `schema.table`.
        table: String,
        /// The missing column names, comma-separated.
        columns: String,
    },
    /// The catalog query itself failed; the database's message.
    #[error("{0}")]
    Database(String),
}

/// The column names of `schema.table`; empty when the table does not exist.
pub(crate) async fn columns_of(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<BTreeSet<String>, TableProblem> {
    Ok(client
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .map_err(|e| TableProblem::Database(e.to_string()))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

/// Every table of the mapping exists with every mapped column (other columns are allowed).
pub(crate) async fn check_tables(
    client: &impl GenericClient,
    schema: &str,
    mapping: &SyncMapping,
) -> Result<(), TableProblem> {
    for kind in ObjectKind::ALL {
        let t = mapping.table(kind);
        let present = columns_of(client, schema, &t.table).await?;
        if present.is_empty() {
            return Err(TableProblem::TableMissing {
                table: format!("{schema}.{}", t.table),
            });
        }
        let missing: Vec<&str> = t
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|c| !present.contains(*c))
            .collect();
        if !missing.is_empty() {
            return Err(TableProblem::ColumnsMissing {
                table: format!("{schema}.{}", t.table),
                columns: missing.join(", "),
            });
        }
    }
    Ok(())
}
