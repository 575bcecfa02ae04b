#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL on 127.0.0.1 (Debian's package, a fresh data
# directory of the run's own under .ci-cache/pg, removed after; a free port), ALTAN_PAY_TEST_DATABASE_URL exported; stops it after.
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

# initdb refuses to run as root: run the server as the postgres user then.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  as_pg=(runuser -u postgres --)
fi
# Each run has a directory of its own (named by this script's pid), so two runs in one
# checkout do not stop each other's server. A run whose script is gone (killed before its
# trap ran) left its server running: stopped and removed here.
base="$root/.ci-cache/pg"
mkdir -p "$base"
script_alive() {   # a zombie (killed, not yet reaped) is not alive
  kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}
for old in "$base"/run-* "$base"; do
  if [ "$old" != "$base" ]; then
    [ -d "$old" ] || continue
    if script_alive "${old##*-}"; then continue; fi
  fi
  if [ -f "$old/data/postmaster.pid" ]; then
    "${as_pg[@]}" "$bin/pg_ctl" -D "$old/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ "$old" = "$base" ]; then
    # what older versions kept in one directory for every run
    rm -rf "$base/data" "$base/sock" "$base/tls" "$base/initdb.log" "$base/server.log"
  else
    rm -rf "$old"
  fi
done
dir="$base/run-$$"
data="$dir/data"
mkdir -p "$data" "$dir/sock"
# TLS too: a throwaway CA and a server certificate for 127.0.0.1; the CA's path is exported as
# ALTAN_PAY_TEST_DATABASE_CA (plain connections still work). openssl is Debian's, installed
# when missing and root; without it the server is plain and the TLS test fails saying so.
if ! command -v openssl >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "with-postgres.sh: installing Debian's openssl package" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null || true
fi
ssl_opts=""
tls="$dir/tls"
if command -v openssl >/dev/null 2>&1 && mkdir -p "$tls" \
  && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=altan-pay test CA" \
       -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
       -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1 \
  && openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
       -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1 \
  && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$tls/ext.cnf" \
  && openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
       -CAcreateserial -days 2 -extfile "$tls/ext.cnf" -out "$tls/server.pem" >/dev/null 2>&1; then
  chmod 600 "$tls/server.key"
  ssl_opts="-c ssl=on -c ssl_cert_file=$tls/server.pem -c ssl_key_file=$tls/server.key"
fi
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
  -o "-h 127.0.0.1 -p $port -k $dir/sock -c fsync=${PG_FSYNC:-off} -c max_connections=500 $ssl_opts" start >/dev/null || {
  cat "$dir/server.log" >&2
  exit 2
}
stop() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

export ALTAN_PAY_TEST_DATABASE_URL="postgres://altan@127.0.0.1:$port/postgres"
if [ -n "$ssl_opts" ]; then
  export ALTAN_PAY_TEST_DATABASE_CA="$tls/ca.pem"
fi
echo "with-postgres.sh: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
"$@"
