# shellcheck shell=bash
# Sourced by chroot-lib.sh and arm64.sh. host_mirror ARCHIVE prints the mirror the host's
# own apt sources use for a Debian archive (debian, debian-security), so that the lab
# downloads from where the host does without changing its sources.
host_mirror() {
  local m
  m=$(grep -rhoE "^(URIs:|deb) +https?://[^ ]+/$1/?( |\$)" /etc/apt/sources.list /etc/apt/sources.list.d/ \
        2>/dev/null | awk '{print $2}' | head -n1 || true)
  echo "${m:-http://deb.debian.org/$1}"
}
