#!/usr/bin/env bash
# Does one Debian release's memcached start warm on the memory file (-e) another release's
# memcached saved? What a warm in-place upgrade needs (memcached's doc/protocol.txt and the
# wiki's WarmRestart page; the check is _mc_meta_load_cb in memcached.c).
#   lab/restart_file_across_releases.sh [FROM_RELEASE] [TO_RELEASE]     (bookworm trixie)
# Two throwaway containers from the lab's images: FROM's memcached stores ITEMS keys, stops
# with SIGUSR1 (saves the metadata), then TO's memcached starts on a copy of the file. Prints
# each version, the items and values read back, and every "[restart]" line memcached wrote.
# A control run restarts FROM's memcached on its own file first. Exit 0 when TO kept every value.
set -euo pipefail
from=${1:-bookworm}
to=${2:-trixie}
items=${ITEMS:-2000}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/mcfleet-restart-file.XXXXXX)
# memcached opens the file after it has dropped to its user: let that user through.
chmod 0755 "$work"
port=11299
say() { printf 'restart-file: %s\n' "$*"; }
cleanup() { podman rm -f "mcfleet-rf-$from" "mcfleet-rf-$to" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/fill_or_check.py" <<'EOF'
import socket
import sys

mode, items = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", 11299), timeout=5)


def reply(until):
    data = b""
    while not data.endswith(until):
        data += sock.recv(65536)
    return data


if mode == "fill":
    for i in range(items):
        value = b"value-%d" % i
        sock.sendall(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
        assert reply(b"\r\n") == b"STORED\r\n"
sock.sendall(b"stats\r\n")
stats = dict(line.split(" ")[1:3] for line in reply(b"END\r\n").decode().split("\r\n") if line.startswith("STAT "))
kept = 0
for i in range(items):
    sock.sendall(b"get k%d\r\n" % i)
    kept += (b"value-%d\r\n" % i) in reply(b"END\r\n")
print(f"memcached {stats['version']}: curr_items {stats['curr_items']}, values read back {kept} of {items}")
sys.exit(0 if kept == items else 1)
EOF

for release in "$from" "$to"; do
  podman image exists "localhost/mcfleet-debian:$release" || "$repo/lab/build-image.sh" "$release"
  podman rm -f "mcfleet-rf-$release" >/dev/null 2>&1 || true
  podman run -d --name "mcfleet-rf-$release" --privileged -v "$work:/x" \
    "localhost/mcfleet-debian:$release" /sbin/init >/dev/null
done
for release in "$from" "$to"; do
  for _ in $(seq 1 60); do
    state=$(podman exec "mcfleet-rf-$release" systemctl is-system-running --wait 2>/dev/null || true)
    case "$state" in running | degraded) break ;; esac
    sleep 1
  done
  podman exec "mcfleet-rf-$release" sh -c 'apt-get -qq update && DEBIAN_FRONTEND=noninteractive \
    apt-get -qq install -y memcached >/dev/null 2>&1 && systemctl stop memcached'
done

# $1 container, $2 fill|check: start memcached on /x/mf/memory_file, run the client, stop
# gracefully (SIGUSR1: memcached writes memory_file.meta), print its [restart] lines.
run() {
  podman exec "mcfleet-rf-$1" sh -c "chown -R memcache:memcache /x/mf
    memcached -u memcache -m 64 -p $port -l 127.0.0.1 -e /x/mf/memory_file -P /tmp/mc.pid -v >/x/log 2>&1 &
    for _ in \$(seq 1 50); do [ -s /tmp/mc.pid ] && break; sleep 0.1; done; sleep 0.5
    python3 /x/fill_or_check.py $2 $items; status=\$?
    kill -USR1 \"\$(cat /tmp/mc.pid)\"; while kill -0 \"\$(cat /tmp/mc.pid)\" 2>/dev/null; do sleep 0.1; done
    grep -a '\[restart\]' /x/log | sed 's/^/  /'
    # memcached refuses a memory file saved in the same whole second it starts
    # (stop_time in _mc_meta_load_cb: \"clock has done something crazy\").
    sleep 1.1; exit \$status"
}
mkdir -p "$work/mf"
say "$from stores $items keys and stops with SIGUSR1"
run "$from" fill
cp -a "$work/mf" "$work/mf-saved"
say "control: $from starts again on its own file"
run "$from" check
rm -rf "$work/mf" && cp -a "$work/mf-saved" "$work/mf"
say "$to starts on the file $from saved"
if run "$to" check; then
  say "$to kept every value of $from's memory file: a warm $from -> $to upgrade is possible"
else
  say "$to did not keep $from's memory file: a $from -> $to upgrade returns cold"
  exit 1
fi
