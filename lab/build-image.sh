#!/usr/bin/env bash
# Build a systemd-capable Debian base image for the lab and Molecule:
#   lab/build-image.sh SUITE   ->  localhost/mcfleet-debian:SUITE
# Images are cached: an existing image is reused unless FORCE=1.
# debootstrap is used because no container registry is reachable here.
set -euo pipefail

suite="${1:?usage: build-image.sh SUITE (bullseye|bookworm|trixie)}"
image="localhost/mcfleet-debian:${suite}"
case "$suite" in
  bullseye|bookworm|trixie) ;;
  buster) echo "build-image: buster is archived and not on the mirror; it is checked by rendering only" >&2; exit 2 ;;
  *) echo "build-image: unknown suite '$suite' (expected bullseye, bookworm or trixie)" >&2; exit 2 ;;
esac

if [ "${FORCE:-0}" != 1 ] && podman image exists "$image"; then
  echo "build-image: $image already present (FORCE=1 rebuilds)"
  exit 0
fi

rootfs=$(mktemp -d "/var/tmp/mcfleet-rootfs-${suite}.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
packages=systemd,systemd-sysv,python3,python3-apt,iproute2,iptables,procps,dbus,ca-certificates
echo "build-image: debootstrap $suite (about 30-60 s)"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" >"$rootfs.log" 2>&1 || {
  tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# Containers have no console or hardware: units that wait for them only slow boot.
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
            systemd-modules-load.service sys-kernel-config.mount systemd-remount-fs.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# The lab's apt traffic goes to the public mirror (upgrades, reimages, the roles' installs):
# retry a dropped or failed fetch instead of failing the maintenance run it is part of.
printf 'Acquire::Retries "5";\n' >"$rootfs/etc/apt/apt.conf.d/80mcfleet-retries"
# policy-rc.d from debootstrap would stop package scripts from starting services.
rm -f "$rootfs/usr/sbin/policy-rc.d"
apt-get clean -o RootDir="$rootfs" >/dev/null 2>&1 || true
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >/dev/null
echo "build-image: built $image"
