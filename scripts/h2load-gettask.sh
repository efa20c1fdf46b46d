#!/usr/bin/env bash
# GetTask under h2load, the load shape of the unary-path issue: `serve` in its own process
# against `simulate` in another, 10 connections x 10 streams, 20,000 calls of one running
# vCenter task after 2,000 to warm up; prints h2load's summary, its latency percentiles and
# the gateway's CPU time per call (utime + stime from /proc/<pid>/stat).
#
#   scripts/h2load-gettask.sh [GATEWAY_BINARY]     (default: target/release/vmware-grpc-gateway)
#
# Needs h2load (Debian: nghttp2-client) and python3. Loopback only; stops by itself.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
gw="${1:-$root/target/release/vmware-grpc-gateway}"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

"$gw" simulate >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    vc="$(grep -o 'vc1 *vsphere *http://[0-9.:]*' "$work/sim.log" | grep -o 'http://.*' || true)"
    [ -n "$vc" ] && break
    sleep 0.1
done
[ -n "$vc" ] || { echo "the simulator did not start" >&2; exit 1; }

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$work/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
[[upstreams]]
name = "vc1"
kind = "vsphere"
url = "$vc"
username = "administrator@vsphere.local"
password_env = "VC1_PASSWORD"
EOF
VC1_PASSWORD='VMware1!' RUST_LOG=warn "$gw" serve --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gateway=$!
pids+=($gateway)
sleep 1.5

# GetTaskRequest{name} as one gRPC frame: flag 0, big-endian length, the message.
python3 - "$work/request.bin" <<'EOF'
import struct, sys
name = b"upstreams/vc1/tasks/52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d11"
msg = b"\x0a" + bytes([len(name)]) + name
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
EOF
load() {
    h2load -c 10 -m 10 -d "$work/request.bin" -H 'content-type: application/grpc' \
        -H 'te: trailers' "$@" "http://127.0.0.1:$port/vmware.gateway.v1.TaskService/GetTask"
}
cpu() { awk '{print $14 + $15}' "/proc/$gateway/stat"; }

load -n 2000 >/dev/null
before="$(cpu)"
load -n 20000 --log-file="$work/latency.tsv" | grep -E 'finished in|requests:|status codes'
after="$(cpu)"
python3 - "$work/latency.tsv" "$before" "$after" <<'EOF'
import sys
lat = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if len(l.split()) >= 3)
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(f"latency ms: min {lat[0] / 1000:.3f}  p50 {pct(0.5):.3f}  p99 {pct(0.99):.3f}")
ticks = int(sys.argv[3]) - int(sys.argv[2])
print(f"gateway CPU per call: {ticks / 100 / len(lat) * 1e6:.1f} µs ({len(lat)} calls)")
EOF
