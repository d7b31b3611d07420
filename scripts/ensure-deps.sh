#!/usr/bin/env bash
# Installs what Parley's tests need on a Debian machine when it is missing.
# Without root it says exactly what to install and fails.
set -euo pipefail

# command:packages (comma-separated). haproxy runs in the multi-process
# cluster test; redis-cli and busybox go into the stand-in images that
# deploy/images.sh builds for the compose test; chromium (with a font for
# screenshots) runs the browser tests; tmux drives the terminal client test;
# php (with curl) runs the PHP backend example against a cluster.
need=(redis-server:redis-server redis-cli:redis-tools haproxy:haproxy busybox:busybox-static chromium:chromium,fonts-dejavu-core tmux:tmux php:php-cli,php-curl)
missing=()
for pair in "${need[@]}"; do
  if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
    pkgs=${pair#*:}
    missing+=(${pkgs//,/ })
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "Parley's tests need: ${missing[*]}" >&2
    echo "Install with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
echo "installing ${missing[*]} ..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
for pair in "${need[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || { echo "install of ${pair#*:} failed: no ${pair%%:*}" >&2; exit 1; }
done
