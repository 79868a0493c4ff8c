#!/usr/bin/env bash
# Builds a local Debian base image for deploy/Dockerfile without any container registry:
# debootstrap (minbase variant) into a temporary directory, then `docker import`.
#
#   deploy/make-base-image.sh [IMAGE]        # default IMAGE: uns-base:bookworm
#
# Idempotent: does nothing when IMAGE already exists (delete it with `docker rmi` to rebuild).
# The Debian mirror is the one apt on this machine already uses (its sources file under
# /etc/apt/), so it works wherever `apt-get install` works; override with UNS_DEBIAN_MIRROR.
# Needs root (debootstrap) and the Docker CLI.
set -euo pipefail

image="${1:-uns-base:bookworm}"
suite="${UNS_DEBIAN_SUITE:-bookworm}"
start=$(date +%s)

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "make-base-image: $image exists, nothing to do (0s)"
  exit 0
fi

# The first http(s) mirror in apt's sources (deb822 `URIs:` or one-line `deb URI suite ...`)
# that serves $suite itself (not -security or -updates).
find_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    # deb822 stanzas are separated by blank lines; keep the URIs of a stanza whose Suites
    # name the plain suite.
    awk -v suite="$suite" '
      /^[[:space:]]*$/ { if (uris != "" && ok) { print uris; done = 1; exit } uris = ""; ok = 0; next }
      tolower($1) == "uris:" { uris = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (!done && uris != "" && ok) print uris }
    ' "$file"
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' "$file" | sed 's/\[.*\]//'
  done
}

mirror="${UNS_DEBIAN_MIRROR:-$(find_mirror | grep -E '^https?://' | head -n1 || true)}"
if [ -z "$mirror" ]; then
  echo "make-base-image: no Debian mirror for '$suite' found under /etc/apt/; set UNS_DEBIAN_MIRROR" >&2
  exit 1
fi

if ! command -v debootstrap >/dev/null; then
  echo "make-base-image: installing debootstrap"
  install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1; }
  install || { apt-get update -qq && install; } || { echo "make-base-image: apt-get install debootstrap failed" >&2; exit 1; }
fi

rootfs=$(mktemp -d /tmp/uns-base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "make-base-image: debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 30 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  exit 1
}
rm -f "$rootfs.log"
# Smaller image, as Debian's -slim images do: no package caches, lists, docs, man pages or
# translations at run time (`apt-get update` restores the lists when needed).
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian/*

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'CMD ["/bin/bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --message "debootstrap --variant=minbase $suite $mirror" \
  - "$image" >/dev/null

size=$(docker image inspect --format '{{.Size}}' "$image")
echo "make-base-image: built $image ($((size / 1000000)) MB) in $(( $(date +%s) - start ))s"
