#!/bin/sh
# Set-up of the benchmarks: wrk, the HTTP load generator of scenarios 4-6, from Debian.
# Without it (no apt-get, no root) the scenarios fall back to the Python load generator.
command -v wrk >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq wrk >/dev/null && exit 0
fi
echo "bench: wrk could not be installed; scenarios 4-6 use the Python load generator" >&2
