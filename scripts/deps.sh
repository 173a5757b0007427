#!/usr/bin/env bash
# Installs what camvault needs to build and test, only when it is missing:
# pkg-config and the FFmpeg 5.1 development libraries (go-astiav, cgo), and
# the ffmpeg/ffprobe command-line tools and headless Chromium the tests use
# as real cameras, and PostgreSQL for the catalog's tests.
set -euo pipefail

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if ! pkg-config --exists libavcodec libavformat libavfilter libavdevice libswscale libswresample libavutil 2>/dev/null; then
  need+=(libavcodec-dev libavformat-dev libavfilter-dev libavdevice-dev libswscale-dev libswresample-dev libavutil-dev)
fi
if [ "${1:-}" = "test" ]; then
  command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
  command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
  # The browser the WHIP tests publish from (fake camera and microphone).
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # The catalog's second engine (Debian's PostgreSQL, cluster main).
  command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
fi
command -v gcc >/dev/null 2>&1 || need+=(gcc)

sudo=""
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "camvault: missing ${need[*]}; install them as root" >&2; exit 1; }
    sudo=sudo
  fi
  echo "camvault: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The tests' S3 server with Object Lock: versitygw, built from the Go module
# proxy into .tools/bin (a few minutes on 2 cores, once per machine).
if [ "${1:-}" = "test" ]; then
  tools="$(cd "$(dirname "$0")/.." && pwd)/.tools/bin"
  if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$tools/versitygw" ]; then
    echo "camvault: building versitygw v1.8.0 for the S3 tests" >&2
    GOBIN="$tools" GOFLAGS= go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
  fi
fi

# PostgreSQL for the catalog's tests: the cluster Debian's package made,
# started without systemd where there is none, a superuser role named
# after the user who runs the tests (peer authentication over the Unix
# socket, no password) and its database camvault_test. The tests'
# default CAMVAULT_TEST_POSTGRES is postgres://$USER@/camvault_test?host=/var/run/postgresql;
# each test works in a schema of its own there and drops it.
if [ "${1:-}" = "test" ]; then
  if [ "$(id -u)" = 0 ]; then
    as_postgres() { runuser -u postgres -- "$@"; }
  else
    sudo=sudo
    as_postgres() { sudo -u postgres -- "$@"; }
  fi
  if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    $sudo pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -n 1)" main >/dev/null
  fi
  read -r pgver pgcluster _ pgstatus _ < <(pg_lsclusters -h | head -n 1)
  if [ "$pgstatus" != online ]; then
    echo "camvault: starting PostgreSQL $pgver/$pgcluster for the catalog tests" >&2
    $sudo pg_ctlcluster --skip-systemctl-redirect "$pgver" "$pgcluster" start
  fi
  pguser="$(id -un)"
  if [ "$(as_postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$pguser'")" != 1 ]; then
    as_postgres psql -qc "CREATE ROLE \"$pguser\" SUPERUSER LOGIN"
  fi
  if [ "$(as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'camvault_test'")" != 1 ]; then
    as_postgres psql -qc "CREATE DATABASE camvault_test OWNER \"$pguser\""
  fi
fi
