#!/usr/bin/env bash
# Prepare a fresh Debian machine for the lab and the tests (idempotent):
#   apt packages, a pinned Python venv in .venv, the podman runtime workaround
#   where a probe needs it, and the base images named on the command line.
#   lab/bootstrap.sh [SUITE ...]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt, podman with systemd containers and iptables need it); nothing was changed"
# MCFLEET_OS_RELEASE lets the tests show the refusal on a non-Debian system.
os_release=${MCFLEET_OS_RELEASE:-/etc/os-release}
# shellcheck disable=SC1090
[ -r "$os_release" ] && . "$os_release"
[ "${ID:-}" = debian ] || die "needs Debian (found ${PRETTY_NAME:-an unknown system}); nothing was changed"

apt_packages=(podman runc debootstrap iptables memcached libmemcached-tools conntrack python3-venv make shellcheck)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The unit tests start their own memcached processes on loopback; the packaged
# daemon would only hold port 11211.
if systemctl is-enabled memcached >/dev/null 2>&1; then
  systemctl disable --now memcached >/dev/null 2>&1 || true
fi

# Each systemd container takes several inotify instances; at the default 128 a lab
# plus a Molecule scenario start containers that exit at once without a word.
if [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 1024 ]; then
  say "raising fs.inotify.max_user_instances to 1024 for systemd containers"
  sysctl -qw fs.inotify.max_user_instances=1024
fi

venv="$repo/.venv"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$repo/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing pinned Python packages into .venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -r "$repo/requirements.txt"
  echo "$want" >"$stamp"
fi

# Images first: the runtime probe needs one.
for suite in "$@"; do
  "$repo/lab/build-image.sh" "$suite"
done

probe_image="localhost/mcfleet-debian:${1:-bookworm}"
if podman image exists "$probe_image"; then
  if ! probe=$(podman run --rm "$probe_image" true 2>&1); then
    if grep -qi 'rlimit' <<<"$probe"; then
      say "container runtime cannot set rlimits here; installing the mcfleet-norlimits runtime wrapper"
      install -D -m 0755 "$repo/lab/oci-runtime-norlimits" /usr/local/lib/mcfleet/oci-runtime-norlimits
      conf=/etc/containers/containers.conf
      if ! grep -q mcfleet-norlimits "$conf" 2>/dev/null; then
        [ -s "$conf" ] && grep -q '^\[engine\]' "$conf" && die "$conf already has an [engine] table; add runtime = \"mcfleet-norlimits\" by hand"
        cat >>"$conf" <<'CONF'
# Added by mcfleet lab/bootstrap.sh: this host's runtime lacks CAP_SYS_RESOURCE.
[engine]
runtime = "mcfleet-norlimits"
[engine.runtimes]
mcfleet-norlimits = ["/usr/local/lib/mcfleet/oci-runtime-norlimits"]
CONF
      fi
      podman run --rm "$probe_image" true || die "containers still fail to start after the runtime workaround"
    else
      die "podman cannot start a container: $probe"
    fi
  fi
fi
say "ready"
