#!/usr/bin/env bash
# Builds the invoker's mount addon (invoker/native/mount.c) with node-gyp: `npm ci` runs it as
# the package's install script. It builds against the headers of the Node.js that runs it
# when they are installed beside it (Debian's and the official builds have them), so nothing
# is downloaded; npm's own `nodedir` setting, when set, wins.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
prefix=$(node -p "require('path').resolve(process.execPath, '..', '..')")
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$prefix/include/node/node_api.h" ]; then
  args+=("--nodedir=$prefix")
fi
exec node-gyp rebuild "${args[@]}"
