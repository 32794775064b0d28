# The invoker's one native addon: mount(2) and umount2(2) (invoker/native/mount.c).
# `npm ci` builds it (the package's install script, scripts/build-addon.sh) into
# build/Release/kiln_mount.node.
{
  "targets": [
    {
      "target_name": "kiln_mount",
      "sources": ["invoker/native/mount.c"],
      "cflags": ["-Wall", "-Wextra"]
    }
  ]
}
