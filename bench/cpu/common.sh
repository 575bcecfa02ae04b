# Sourced by bench/cpu/run.sh and bench/cpu/profile.sh: the processes they start (stopped on
# exit), a free port, and a wait for an HTTP endpoint (WAIT_TRIES tries, 0.1 s apart).
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq "${WAIT_TRIES:-100}"); do curl -sf "$1" > /dev/null && return 0; sleep 0.1; done
    echo "no answer from $1" >&2; exit 1
}
