// mount(2) and umount2(2) for the invoker, as a Node-API addon. Spawning mount(8) from the
// invoker costs milliseconds, most of it fork() copying the invoker's page tables; the system
// calls themselves take tens of microseconds. A failure is thrown as an Error whose `code` is
// errno's number (mount.ts names it).
#include <errno.h>
#include <stdio.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

// A string argument, or NULL for null/undefined; refused if it holds a NUL byte (the kernel
// would see a shorter string). The caller frees it.
static int arg_string(napi_env env, napi_value v, char **out) {
  napi_valuetype t;
  *out = NULL;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_null || t == napi_undefined) return 1;
  size_t n;
  if (t != napi_string || napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) return 0;
  *out = malloc(n + 1);
  return *out && napi_get_value_string_utf8(env, v, *out, n + 1, &n) == napi_ok && strlen(*out) == n;
}

static void throw_errno(napi_env env, int err) {
  char code[16];
  snprintf(code, sizeof code, "%d", err);
  napi_throw_error(env, code, strerror(err));
}

// mount(source, target, fstype, flags, data): each string may be null.
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value a[5];
  char *s[4] = {NULL, NULL, NULL, NULL}; // source, target, fstype, data
  int64_t flags = 0;
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int ok = argc == 5 && arg_string(env, a[0], &s[0]) && arg_string(env, a[1], &s[1]) && s[1] &&
           arg_string(env, a[2], &s[2]) && arg_string(env, a[4], &s[3]) &&
           napi_get_value_int64(env, a[3], &flags) == napi_ok;
  if (!ok) napi_throw_type_error(env, NULL, "mount(source, target, fstype, flags, data)");
  else if (mount(s[0], s[1], s[2], (unsigned long)flags, s[3]) != 0) throw_errno(env, errno);
  for (int i = 0; i < 4; i++) free(s[i]);
  return NULL;
}

// umount(target, flags)
static napi_value js_umount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  char *target = NULL;
  int32_t flags = 0;
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int ok = argc == 2 && arg_string(env, a[0], &target) && target && napi_get_value_int32(env, a[1], &flags) == napi_ok;
  if (!ok) napi_throw_type_error(env, NULL, "umount(target, flags)");
  else if (umount2(target, flags) != 0) throw_errno(env, errno);
  free(target);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value m, u;
  if (napi_create_function(env, "mount", NAPI_AUTO_LENGTH, js_mount, NULL, &m) != napi_ok ||
      napi_create_function(env, "umount", NAPI_AUTO_LENGTH, js_umount, NULL, &u) != napi_ok ||
      napi_set_named_property(env, exports, "mount", m) != napi_ok ||
      napi_set_named_property(env, exports, "umount", u) != napi_ok)
    return NULL; // an exception is pending: require() throws it
  return exports;
}
