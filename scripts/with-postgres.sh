#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL on 127.0.0.1 (Debian's package, a fresh data
# directory under .ci-cache/pg, a free port), ALTAN_PAY_TEST_DATABASE_URL exported; stops it after.
# fsync is off for tests (PG_FSYNC=on keeps it, as the benchmarks do); max_connections=500 covers
# the replica tests, each replica holding two connection pools.
# Usage: scripts/with-postgres.sh cargo test --test events_reconcile
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

bin=$(pg_bin || true)
if [ -z "$bin" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "with-postgres.sh: PostgreSQL is not installed; run as root or 'apt-get install postgresql'" >&2
    exit 2
  fi
  echo "with-postgres.sh: installing Debian's postgresql package" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bin=$(pg_bin)
fi

dir="$root/.ci-cache/pg"
data="$dir/data"
# initdb refuses to run as root: run the server as the postgres user then.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  as_pg=(runuser -u postgres --)
fi
if [ -f "$data/postmaster.pid" ]; then
  "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
fi
rm -rf "$data" "$dir/sock"
mkdir -p "$data" "$dir/sock"
if [ "$(id -u)" -eq 0 ]; then
  chown -R postgres:postgres "$dir"
fi

port=""
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
    port=$candidate
    break
  fi
done
if [ -z "$port" ]; then
  echo "with-postgres.sh: no free port found" >&2
  exit 2
fi

"${as_pg[@]}" "$bin/initdb" -D "$data" -A trust -U altan -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2
  exit 2
}
"${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w \
  -o "-h 127.0.0.1 -p $port -k $dir/sock -c fsync=${PG_FSYNC:-off} -c max_connections=500" start >/dev/null || {
  cat "$dir/server.log" >&2
  exit 2
}
stop() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop EXIT

export ALTAN_PAY_TEST_DATABASE_URL="postgres://altan@127.0.0.1:$port/postgres"
echo "with-postgres.sh: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
"$@"
