/*
 * The system calls Node does not offer and fspool cannot do without, and one loop that is too
 * slow in JavaScript (cfbXor, at the end).
 *
 * flock(2): fspl locks `nextseq.lock` with flock(LOCK_EX|LOCK_NB). On Linux flock locks and
 * fcntl/OFD locks do not exclude each other, so only flock(2) on the same file keeps fspool
 * and a running fspl from processing one queue at once. The lock belongs to the open file
 * description, so the kernel drops it when fspool's fd closes or fspool dies.
 *
 * fcntl(2) to clear O_NONBLOCK: see src/run/guarded.ts, "fd 2".
 *
 * pipe2(2): Node's stdio 'pipe' is an AF_UNIX socketpair. Receivers such as `zfs receive`
 * expect a real pipe on stdin (they resize it with F_SETPIPE_SZ), and we must never hand a
 * receiver a pipe we have already read from, so we make our own, with O_CLOEXEC on both ends
 * so that no other child inherits them.
 *
 * ioctl(TIOCGWINSZ): the terminal's width for --help. Node offers it only through a tty stream
 * on the fd, which would set O_NONBLOCK on the open file description the shell shares.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdint.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  napi_value code, msg, error, errnum;
  const char *name = err == EBADF ? "EBADF" : err == EINTR ? "EINTR" : err == ENOLCK ? "ENOLCK"
                     : err == EMFILE ? "EMFILE" : err == ENFILE ? "ENFILE" : err == EINVAL ? "EINVAL"
                     : "EIO";
  char text[256];
  snprintf(text, sizeof text, "%s: %s", syscall, strerror(err));
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_set_named_property(env, error, "code", code);
  napi_throw(env, error);
  return NULL;
}

/* flock(fd, op) -> true when the lock was taken, false when LOCK_NB met contention. */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t fd, op;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &op) != napi_ok)
    return throw_errno(env, EINVAL, "flock");
  int rc;
  do rc = flock(fd, op); while (rc == -1 && errno == EINTR);
  if (rc == -1 && errno != EWOULDBLOCK) return throw_errno(env, errno, "flock");
  napi_get_boolean(env, rc == 0, &result);
  return result;
}

/* pipe() -> [readFd, writeFd], both O_CLOEXEC. */
static napi_value js_pipe(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  napi_value result, r, w;
  if (pipe2(fds, O_CLOEXEC) == -1) return throw_errno(env, errno, "pipe2");
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, fds[0], &r);
  napi_create_int32(env, fds[1], &w);
  napi_set_element(env, result, 0, r);
  napi_set_element(env, result, 1, w);
  return result;
}

/* clearNonblock(fd): clear O_NONBLOCK on the open file description behind fd. */
static napi_value js_clear_nonblock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_errno(env, EINVAL, "fcntl");
  int flags = fcntl(fd, F_GETFL);
  if (flags == -1) return throw_errno(env, errno, "fcntl");
  if ((flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1) return throw_errno(env, errno, "fcntl");
  return NULL;
}

/* reap(pid) -> true once the (zombie) child is reaped or is not ours; false while it runs. */
static napi_value js_reap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int32_t pid;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0) return throw_errno(env, EINVAL, "waitpid");
  int status;
  pid_t r;
  do r = waitpid(pid, &status, WNOHANG); while (r == -1 && errno == EINTR);
  napi_get_boolean(env, r != 0, &result);
  return result;
}

/*
 * cfbXor(ks, ct, reg): the second half of CFB decryption (src/codec/seipd.ts). CFB decrypts
 * P[i] = E(C[i-1]) ^ C[i]; fspool has Node encrypt all of C with AES-ECB at once (pipelined
 * AES-NI, several times faster than OpenSSL's block-at-a-time CFB), which leaves ks[i] = E(C[i]).
 * This turns ks into the plaintext in place, shifted by one block: P[0] = reg ^ C[0],
 * P[i] = ks[i-1] ^ C[i]; and leaves E(C[last]) in reg (16 bytes) for the next call. ks's length
 * is a multiple of 16; ct has at least as many bytes.
 */
static napi_value js_cfb_xor(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *ks, *ct, *reg;
  size_t ks_len, ct_len, reg_len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_buffer_info(env, argv[0], (void **)&ks, &ks_len) != napi_ok ||
      napi_get_buffer_info(env, argv[1], (void **)&ct, &ct_len) != napi_ok ||
      napi_get_buffer_info(env, argv[2], (void **)&reg, &reg_len) != napi_ok || ks_len % 16 != 0 ||
      ct_len < ks_len || reg_len != 16)
    return throw_errno(env, EINVAL, "cfbXor");
  uint8_t prev[16], next[16];
  memcpy(prev, reg, 16);
  for (size_t i = 0; i < ks_len; i += 16) {
    memcpy(next, ks + i, 16);
    for (int j = 0; j < 16; j++) ks[i + j] = prev[j] ^ ct[i + j];
    memcpy(prev, next, 16);
  }
  memcpy(reg, prev, 16);
  return NULL;
}

/* winsize(fd) -> columns of the terminal on fd, or undefined when fd is not a terminal. */
static napi_value js_winsize(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int32_t fd;
  struct winsize ws;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_errno(env, EINVAL, "winsize");
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) {
    napi_get_undefined(env, &result);
    return result;
  }
  napi_create_int32(env, ws.ws_col, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, num;
  napi_create_function(env, "flock", NAPI_AUTO_LENGTH, js_flock, NULL, &fn);
  napi_set_named_property(env, exports, "flock", fn);
  napi_create_function(env, "pipe", NAPI_AUTO_LENGTH, js_pipe, NULL, &fn);
  napi_set_named_property(env, exports, "pipe", fn);
  napi_create_function(env, "reap", NAPI_AUTO_LENGTH, js_reap, NULL, &fn);
  napi_set_named_property(env, exports, "reap", fn);
  napi_create_function(env, "cfbXor", NAPI_AUTO_LENGTH, js_cfb_xor, NULL, &fn);
  napi_set_named_property(env, exports, "cfbXor", fn);
  napi_create_function(env, "clearNonblock", NAPI_AUTO_LENGTH, js_clear_nonblock, NULL, &fn);
  napi_set_named_property(env, exports, "clearNonblock", fn);
  napi_create_function(env, "winsize", NAPI_AUTO_LENGTH, js_winsize, NULL, &fn);
  napi_set_named_property(env, exports, "winsize", fn);
  napi_create_int32(env, LOCK_EX, &num);
  napi_set_named_property(env, exports, "LOCK_EX", num);
  napi_create_int32(env, LOCK_NB, &num);
  napi_set_named_property(env, exports, "LOCK_NB", num);
  napi_create_int32(env, LOCK_UN, &num);
  napi_set_named_property(env, exports, "LOCK_UN", num);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
