#!/usr/bin/env bash
# Prepares this machine for kiln, from a fresh Debian with Node.js 20 and root: the Debian
# packages it needs, the npm packages, the TypeScript build and the base and runtime image
# layers. Quick and silent when everything is already there; `npm start` and `npm test` run it.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v runc >/dev/null || need+=(runc)
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need+=(busybox-static)
command -v mount >/dev/null || need+=(mount)
command -v promtool >/dev/null || need+=(prometheus) # prometheus and promtool: infra/prometheus, its tests
# The invoker's mount addon (invoker/native/mount.c) is compiled by node-gyp at install.
command -v make >/dev/null || need+=(make)
command -v cc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++) # node-gyp links with the C++ driver
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "kiln: missing Debian packages (${need[*]}) and not root to install them" >&2
    exit 1
  fi
  echo "kiln: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's redis-server package may start a system service; kiln runs its own.
  if command -v service >/dev/null && pgrep -x redis-server >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
  fi
  # Likewise the prometheus package may start a system Prometheus on :9090 (init script pid file
  # /run/prometheus/prometheus.pid, or a systemd unit); scripts/prometheus.sh runs kiln's own.
  if [[ " ${need[*]} " == *" prometheus "* ]] && command -v service >/dev/null; then
    service prometheus stop >/dev/null 2>&1 || true
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# npm ci builds the addon; a checkout whose mount.c changed since needs it built again.
addon=build/Release/kiln_mount.node
if [ ! -f $addon ] || [ invoker/native/mount.c -nt $addon ] || [ binding.gyp -nt $addon ] || [ scripts/build-addon.sh -nt $addon ]; then
  npm run --silent install >/dev/null
fi

npx tsc -p tsconfig.json
node dist/invoker/images/main.js
