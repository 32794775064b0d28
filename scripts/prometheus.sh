#!/usr/bin/env bash
# Runs Prometheus in the foreground for the local kiln (`npm start` in another terminal), with
# kiln's recording rules and alerts: infra/prometheus/prometheus.yml with the real ports.
#
#   KILN_PORT (8080), KILN_INVOKER_METRICS_PORT (9101), KILN_HOST (127.0.0.1): what to scrape
#   PROMETHEUS_PORT (9090): where Prometheus listens (on 127.0.0.1)
#   KILN_STATE_DIR (.kiln in the checkout): Prometheus keeps its config and data in
#   $KILN_STATE_DIR/prometheus
#
# Then e.g. http://127.0.0.1:9090/api/v1/query?query=kiln:invocations:rate1m, or Grafana with
# infra/grafana/. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "kiln: prometheus is not installed and not root to install it (apt-get install prometheus)" >&2
    exit 1
  fi
  echo "kiln: installing prometheus" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package may start a system Prometheus on :9090; this script runs its own.
  if command -v service >/dev/null; then
    service prometheus stop >/dev/null 2>&1 || true
  fi
fi

port_of() { # name value: checks a port number
  if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt 65535 ]; then
    echo "kiln: $1 must be a port number (1-65535), not '$2'" >&2
    exit 1
  fi
  echo "$2"
}
gateway_port=$(port_of KILN_PORT "${KILN_PORT:-8080}")
invoker_port=$(port_of KILN_INVOKER_METRICS_PORT "${KILN_INVOKER_METRICS_PORT:-9101}")
prometheus_port=$(port_of PROMETHEUS_PORT "${PROMETHEUS_PORT:-9090}")
host=${KILN_HOST:-127.0.0.1}
case "$host" in 0.0.0.0 | :: | "[::]") host=127.0.0.1 ;; esac
case "$host" in *:*) [[ "$host" == \[* ]] || host="[$host]" ;; esac # IPv6 literal

state_dir=${KILN_STATE_DIR:-$root/.kiln}
dir=$state_dir/prometheus
mkdir -p "$dir/data"
config=$dir/prometheus.yml
src=$root/infra/prometheus
# The same file with the real targets and absolute rule paths (they are relative to the config).
sed -e "s#\"127\.0\.0\.1:8080\"#\"$host:$gateway_port\"#" \
    -e "s#\"127\.0\.0\.1:9101\"#\"$host:$invoker_port\"#" \
    -e "s#^  - rules\.yml#  - $src/rules.yml#" \
    -e "s#^  - alerts\.yml#  - $src/alerts.yml#" \
    "$src/prometheus.yml" >"$config.tmp"
mv "$config.tmp" "$config"
if ! out=$(promtool check config "$config" 2>&1); then
  echo "$out" >&2
  exit 1
fi

echo "kiln: Prometheus on http://127.0.0.1:$prometheus_port scraping the gateway at $host:$gateway_port and the invoker at $host:$invoker_port (config and data in $dir)" >&2
exec prometheus \
  --config.file="$config" \
  --storage.tsdb.path="$dir/data" \
  --web.listen-address="127.0.0.1:$prometheus_port" \
  --web.enable-lifecycle \
  --log.level="${PROMETHEUS_LOG_LEVEL:-warn}"
