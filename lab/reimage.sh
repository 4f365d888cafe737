#!/usr/bin/env bash
# Reimage a lab host: recreate its container from another Debian release's image with the
# same name, hostname, network and address (what a reimage does to a real server).
#   lab/reimage.sh CONTAINER RELEASE
# playbooks/rolling_maintenance.yml runs it as the lab's reimage_command.
set -euo pipefail
container=$1
release=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
image=localhost/mcfleet-debian:$release
say() { printf 'reimage: %s\n' "$*"; }

podman container exists "$container" || { echo "reimage: no container $container" >&2; exit 1; }
podman image exists "$image" || "$repo/lab/build-image.sh" "$release"
network=$(podman inspect --format '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}' "$container")
address=$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$container")
hostname=$(podman inspect --format '{{.Config.Hostname}}' "$container")
# The same NIC: a reimaged server keeps its MAC, and so the routers' neighbour caches stay right.
mac=$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}' "$container")
say "$container ($hostname, $address on $network) -> $image"
podman rm -f "$container" >/dev/null
podman run -d --name "$container" --hostname "$hostname" --network "$network" --ip "$address" \
  --mac-address "$mac" --restart=always --systemd=always --privileged "$image" /sbin/init >/dev/null
# systemctl cannot reach PID 1 for a moment after the start.
for _ in $(seq 1 60); do
  state=$(podman exec "$container" systemctl is-system-running --wait 2>/dev/null || true)
  case "$state" in running | degraded) say "$container is up ($state)"; exit 0 ;; esac
  sleep 1
done
echo "reimage: $container did not finish booting" >&2
exit 1
