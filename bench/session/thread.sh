#!/usr/bin/env bash
# CPU and bytes written per turn at turn 1, 100 and 1,000 of one thread, on SQLite (a file in
# target/, on disk) and, with a throwaway PostgreSQL (fsync on, as in production), on PostgreSQL.
# Usage: bash bench/session/thread.sh [TURNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
turns=${1:-1000}
cargo build --release --example thread_growth -q
db=target/thread_growth.db
rm -f "$db" "$db-wal" "$db-shm"
target/release/examples/thread_growth --turns "$turns" --db "$db"
rm -f "$db" "$db-wal" "$db-shm"
PG_FSYNC=on bash scripts/with-postgres.sh sh -c \
  'target/release/examples/thread_growth --turns "$0" --pg "$ALTAN_PAY_TEST_DATABASE_URL"' "$turns"
