//! The throwaway PostgreSQL that scripts/with-postgres.sh starts for the tests: its URL, a
//! plain client on it, and a database of a test's own.

#![allow(dead_code)]

/// `ALTAN_PAY_TEST_DATABASE_URL`. A PostgreSQL test without it fails, naming the way to run
/// it, rather than passing without having run.
pub fn database_url() -> String {
    match std::env::var("ALTAN_PAY_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "ALTAN_PAY_TEST_DATABASE_URL is not set: run the PostgreSQL tests through scripts/with-postgres.sh (e.g. `bash scripts/with-postgres.sh cargo test --test store_contract`), which starts a throwaway PostgreSQL on 127.0.0.1"
        ),
    }
}

/// A client without TLS (the test server listens on loopback).
pub async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    client
}

/// A new, empty database on the test server, and its URL, so tests that run in parallel (or
/// replicas that migrate) never meet another test's tables.
pub async fn fresh_database(url: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    client(url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a database on the test PostgreSQL");
    let mut parsed = url::Url::parse(url).expect("ALTAN_PAY_TEST_DATABASE_URL is a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}
