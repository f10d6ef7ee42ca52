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
 * spawnHelper, helperSend, helperRecv, reap: fspool starts its children through one small
 * helper process (native/fspool_spawner.c; spec/processing.md, "Starting a child"). The helper
 * itself is started with posix_spawn, which glibc implements with clone(CLONE_VM |
 * CLONE_VFORK): no copy of Node's memory, and nothing but async-signal-safe calls before the
 * exec, as a parent with threads (libuv's pool, V8's) requires. Requests go over a unix
 * socket, with the child's fds as SCM_RIGHTS, which Node cannot send.
 *
 * scanJobDir: a queue's jobs/ read and every job file lstat'ed in one call, for listings (see
 * the function); a large directory's lstats run on several threads.
 *
 * isatty(3): whether an fd is a terminal, without node:tty, which loads node:net and the
 * streams (~5 ms) for the question.
 *
 * ioctl(TIOCGWINSZ): the terminal's width for --help. Node offers it only through a tty stream
 * on the fd, which would set O_NONBLOCK on the open file description the shell shares.
 *
 * ioctl(FIONREAD): how much of a payload a receiver left in its stdin pipe when it exited.
 *
 * readPipe: the read end of a receiver's stderr pipe, watched on Node's own event loop (a
 * uv_poll_t) and read here, each chunk handed to JavaScript: a net.Socket would load node:net
 * and the streams, ~5 ms of start-up for every run that delivers a raw payload.
 *
 * sha256: a packet's identity (src/packet/identity.ts) is hashed by the OpenSSL Node exports
 * to addons (as native/fspool_cfb.c decrypts): loading node:crypto for it would cost every
 * command that runs or judges a job ~5 ms of start-up.
 *
 * mapFile: bin/fspool's bundle and code cache, mapped instead of read (see the function).
 *
 * sdNotify: serve tells systemd (Type=notify) when it is ready, reloading or stopping, with a
 * datagram on the unix socket $NOTIFY_SOCKET names; node:dgram has no unix datagram sockets.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
#include <openssl/evp.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sched.h>
#include <node_api.h>
#include <uv.h>

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  napi_value code, msg, error, errnum;
  const char *name = err == EBADF ? "EBADF" : err == EINTR ? "EINTR" : err == ENOLCK ? "ENOLCK"
                     : err == EMFILE ? "EMFILE" : err == ENFILE ? "ENFILE" : err == EINVAL ? "EINVAL"
                     : err == EPIPE ? "EPIPE" : err == ECONNRESET ? "ECONNRESET" : err == ENOENT ? "ENOENT"
                     : err == EACCES ? "EACCES" : err == ENOMEM ? "ENOMEM" : err == EAGAIN ? "EAGAIN"
                     : err == ECONNREFUSED ? "ECONNREFUSED"
                     : "EIO";
  char text[256];
  snprintf(text, sizeof text, "%s: %s", syscall, strerror(err));
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_set_named_property(env, error, "code", code);
  napi_value sys;
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
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

/*
 * pipe([capacity]) -> [readFd, writeFd], both O_CLOEXEC. With a capacity, the pipe is resized
 * to it while it is new and empty (F_SETPIPE_SZ): a receiver's stdin pipe of 1 MiB lets the
 * writer hand over whole decoded chunks while the receiver drains the last, instead of waking
 * it every 64 KiB. The kernel may refuse (over the user's pipe-user-pages-soft): then the pipe
 * keeps its default size, which only costs speed.
 */
static napi_value js_pipe(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t capacity = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc >= 1) napi_get_value_int32(env, argv[0], &capacity);
  int fds[2];
  napi_value result, r, w;
  if (pipe2(fds, O_CLOEXEC) == -1) return throw_errno(env, errno, "pipe2");
  if (capacity > 0) (void)fcntl(fds[1], F_SETPIPE_SZ, capacity);
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

/* reap(pid, wait) -> true once the child is reaped (or is not ours); false while it runs and
 * `wait` is false. */
static napi_value js_reap(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t pid;
  bool wait = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0) return throw_errno(env, EINVAL, "waitpid");
  if (argc > 1) napi_get_value_bool(env, argv[1], &wait);
  int status;
  pid_t r;
  do r = waitpid(pid, &status, wait ? 0 : WNOHANG); while (r == -1 && errno == EINTR);
  napi_get_boolean(env, r != 0, &result);
  return result;
}

extern char **environ;

/* An fd above 3, which the helper's dup2 actions write over. */
static int above_three(int fd) {
  if (fd > 3) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 4);
  int e = errno;
  close(fd);
  errno = e;
  return moved;
}

/*
 * spawnHelper(path) -> { pid, requestFd }: start the helper with a unix socket on its fd 3 and
 * /dev/null on 0-2, in a session of its own (so that signals aimed at fspool's process group
 * or terminal miss it), every signal at its default and none blocked, and fspool's own
 * environment (whose PATH its execvpe uses, as fspool's own would). Our end is close-on-exec.
 */
static napi_value js_spawn_helper(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  char path[4096];
  size_t plen;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen >= sizeof path - 1)
    return throw_errno(env, EINVAL, "posix_spawn");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) return throw_errno(env, errno, "socketpair");
  int theirs = above_three(sv[1]);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
  posix_spawn_file_actions_adddup2(&fa, 0, 1);
  posix_spawn_file_actions_adddup2(&fa, 0, 2);
  posix_spawn_file_actions_adddup2(&fa, theirs, 3);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  char *args[] = {path, NULL};
  int rc = theirs < 0 ? errno : posix_spawn(&pid, path, &fa, &attr, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (theirs >= 0) close(theirs);
  if (rc != 0) {
    close(sv[0]);
    return throw_errno(env, rc, "posix_spawn");
  }
  napi_create_object(env, &result);
  napi_create_int32(env, pid, &v);
  napi_set_named_property(env, result, "pid", v);
  napi_create_int32(env, sv[0], &v);
  napi_set_named_property(env, result, "requestFd", v);
  return result;
}

/*
 * childStatus(pid) -> undefined while the child runs, [code, signal] once it has exited
 * (code -1 if a signal killed it), null if it is not (or no longer) our child. Does not reap:
 * the zombie keeps the pid, and its process group id, until reap().
 */
static napi_value js_child_status(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  int32_t pid;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0) return throw_errno(env, EINVAL, "waitid");
  siginfo_t si;
  int rc;
  do {
    si.si_pid = 0;
    rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
  } while (rc == -1 && errno == EINTR);
  if (rc == -1) {
    napi_get_null(env, &result);
    return result;
  }
  if (si.si_pid == 0) return NULL;
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, si.si_code == CLD_EXITED ? si.si_status : -1, &v);
  napi_set_element(env, result, 0, v);
  napi_create_int32(env, si.si_code == CLD_EXITED ? 0 : si.si_status, &v);
  napi_set_element(env, result, 1, v);
  return result;
}

/*
 * helperSend(fd, request, fds): send `request` whole on the helper's socket with `fds`
 * attached (SCM_RIGHTS); helperRecv reads the reply. Throws EPIPE or ECONNRESET if the helper
 * is gone.
 */
static napi_value js_helper_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  uint8_t *buf;
  size_t len;
  uint32_t nfds = 0;
  int fds[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], (void **)&buf, &len) != napi_ok || napi_get_array_length(env, argv[2], &nfds) != napi_ok ||
      nfds > 8)
    return throw_errno(env, EINVAL, "sendmsg");
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value x;
    napi_get_element(env, argv[2], i, &x);
    if (napi_get_value_int32(env, x, &fds[i]) != napi_ok) return throw_errno(env, EINVAL, "sendmsg");
  }
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * 8)];
  } ctl;
  size_t off = 0;
  while (off < len) {
    struct iovec iov = {.iov_base = buf + off, .iov_len = len - off};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (off == 0 && nfds > 0) {
      /* The fds ride with the request's first bytes. */
      memset(&ctl, 0, sizeof ctl);
      mh.msg_control = ctl.buf;
      mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
      struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
      memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n == -1 && errno == EINTR) continue;
    if (n == -1) return throw_errno(env, errno, "sendmsg");
    off += (size_t)n;
  }
  return NULL;
}

/*
 * helperRecv(fd, wait) -> the helper's next 16-byte record; with `wait` false, undefined if
 * none has come. null at end of file (the helper is gone). A record is sent whole: once its
 * first byte is here, the rest is read blocking.
 */
static napi_value js_helper_recv(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t fd;
  bool wait = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_bool(env, argv[1], &wait) != napi_ok)
    return throw_errno(env, EINVAL, "recv");
  unsigned char rec[16];
  size_t got = 0;
  while (got < sizeof rec) {
    ssize_t n = recv(fd, rec + got, sizeof rec - got, got == 0 && !wait ? MSG_DONTWAIT : 0);
    if (n == -1 && errno == EINTR) continue;
    if (n == -1 && got == 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return NULL;
    if (n == -1) return throw_errno(env, errno, "recv");
    if (n == 0) {
      napi_get_null(env, &result);
      return result;
    }
    got += (size_t)n;
  }
  void *data;
  napi_create_buffer_copy(env, sizeof rec, rec, &data, &result);
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

/* sha256(bytes) -> Buffer(32). */
static napi_value js_sha256(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  void *data, *out;
  size_t len;
  unsigned char md[32];
  unsigned int n = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) return throw_errno(env, EINVAL, "sha256");
  if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != sizeof md) return throw_errno(env, EIO, "sha256");
  napi_create_buffer_copy(env, sizeof md, md, &out, &result);
  return result;
}

/* isatty(fd) -> boolean. */
static napi_value js_isatty(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_errno(env, EINVAL, "isatty");
  napi_get_boolean(env, isatty(fd) == 1, &result);
  return result;
}

/*
 * sdNotify(path, message): one datagram to the unix socket `path`, as sd_notify(3) sends it: an
 * absolute path, or one starting with '@', in the abstract namespace (its '@' becomes a NUL
 * byte). Waits at most 2 s for room in the socket's queue (a busy PID 1 reads it late; sd_notify
 * itself waits for ever): then EAGAIN, and serve goes on.
 */
static napi_value js_sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  struct sockaddr_un addr;
  char message[4096];
  size_t plen = 0, mlen = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  /* The lengths first: a value that does not fit whole is refused, never sent cut short. */
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], NULL, 0, &plen) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], NULL, 0, &mlen) != napi_ok || plen == 0 || plen >= sizeof addr.sun_path ||
      mlen >= sizeof message)
    return throw_errno(env, EINVAL, "sdNotify");
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  napi_get_value_string_utf8(env, argv[0], addr.sun_path, sizeof addr.sun_path, &plen);
  napi_get_value_string_utf8(env, argv[1], message, sizeof message, &mlen);
  if (addr.sun_path[0] != '/' && addr.sun_path[0] != '@') return throw_errno(env, EINVAL, "sdNotify");
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd == -1) return throw_errno(env, errno, "socket");
  struct timeval wait = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof wait);
  ssize_t n = sendto(fd, message, mlen, MSG_NOSIGNAL, (struct sockaddr *)&addr, offsetof(struct sockaddr_un, sun_path) + plen);
  int err = errno;
  close(fd);
  if (n == -1) return throw_errno(env, err, "sendto");
  napi_get_undefined(env, &result);
  return result;
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

/* fsIds(uid, gid, groups) -> whether this thread's file-system ids are now uid and gid, and its
 * supplementary groups `groups` (setfsuid(2), setfsgid(2), setgroups(2): per thread, and only
 * for access to files; signals and the rest of the process keep their ids). The groups count as
 * much as the ids: root's own (disk, adm, wheel on some systems) would open to the owner whatever
 * they may write. setgroups is made as the raw system call, which changes the calling thread's
 * credentials alone; glibc's wrapper would change every thread's, libuv's pool and V8's included.
 * A call with an invalid id changes nothing and returns the current one, which is how each is
 * checked. */
/* This thread's supplementary groups (getgroups(2) reads the calling thread's credentials), in
 * memory the caller frees, and their number in *n; NULL with errno set if they cannot be read. */
static gid_t *thread_groups(int *n) {
  int m = getgroups(0, NULL);
  if (m < 0) return NULL;
  gid_t *list = malloc((m ? m : 1) * sizeof *list);
  if (!list) {
    errno = ENOMEM;
    return NULL;
  }
  *n = getgroups(m, list);
  if (*n < 0) {
    int e = errno;
    free(list);
    errno = e;
    return NULL;
  }
  return list;
}

static int gid_order(const void *a, const void *b) {
  gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
  return x < y ? -1 : x > y;
}

static napi_value js_fs_ids(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result, item;
  uint32_t uid, gid, n = 0, i;
  bool is_array = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_value_uint32(env, argv[0], &uid) != napi_ok || napi_get_value_uint32(env, argv[1], &gid) != napi_ok ||
      napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[2], &n) != napi_ok)
    return throw_errno(env, EINVAL, "setfsuid");
  gid_t *list = malloc((n ? n : 1) * sizeof *list);
  if (!list) return throw_errno(env, ENOMEM, "setgroups");
  for (i = 0; i < n; i++) {
    uint32_t g;
    if (napi_get_element(env, argv[2], i, &item) != napi_ok || napi_get_value_uint32(env, item, &g) != napi_ok) {
      free(list);
      return throw_errno(env, EINVAL, "setgroups");
    }
    list[i] = g;
  }
  /* 32-bit ARM and i386 have a 16-bit setgroups beside the 32-bit one glibc uses: gid_t is 32 bits. */
#ifdef SYS_setgroups32
  bool took = syscall(SYS_setgroups32, (size_t)n, list) == 0;
#else
  bool took = syscall(SYS_setgroups, (size_t)n, list) == 0;
#endif
  /* Taken as given: the same groups, read back (the kernel keeps them sorted). */
  if (took) {
    int m = 0;
    gid_t *back = thread_groups(&m);
    took = back && (uint32_t)m == n;
    if (took) {
      qsort(back, n, sizeof *back, gid_order);
      qsort(list, n, sizeof *list, gid_order);
      took = memcmp(back, list, n * sizeof *list) == 0;
    }
    free(back);
  }
  free(list);
  setfsgid(gid);
  setfsuid(uid);
  napi_get_boolean(env, took && (uint32_t)setfsuid(-1) == uid && (uint32_t)setfsgid(-1) == gid, &result);
  return result;
}

/* groups() -> this thread's supplementary groups (getgroups(2), which reads the calling
 * thread's credentials), to be given back after fsIds. */
static napi_value js_groups(napi_env env, napi_callback_info info) {
  napi_value result, item;
  (void)info;
  int n = 0;
  gid_t *list = thread_groups(&n);
  if (!list) return throw_errno(env, errno, "getgroups");
  napi_create_array_with_length(env, (size_t)n, &result);
  for (int i = 0; i < n; i++) {
    napi_create_uint32(env, list[i], &item);
    napi_set_element(env, result, (uint32_t)i, item);
  }
  free(list);
  return result;
}

/* pending(fd) -> the bytes waiting to be read in the pipe (or socket) fd (ioctl FIONREAD). */
static napi_value js_pending(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int32_t fd;
  int n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_errno(env, EINVAL, "ioctl");
  if (ioctl(fd, FIONREAD, &n) != 0) return throw_errno(env, errno, "ioctl");
  napi_create_int32(env, n, &result);
  return result;
}

/*
 * seek(fd, pos, hole) -> lseek(fd, pos, SEEK_HOLE if hole else SEEK_DATA): where the next hole or
 * data at or after pos starts; -1 when no data is left (ENXIO). A file system that keeps no
 * holes says data at pos and a hole at the end. Comparing copies of a sparse file reads only
 * what any of them holds, instead of terabytes of zeros.
 */
static napi_value js_seek(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  int32_t fd;
  int64_t pos;
  bool hole;
  off_t at;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &pos) != napi_ok || pos < 0 ||
      napi_get_value_bool(env, argv[2], &hole) != napi_ok) {
    return throw_errno(env, EINVAL, "lseek");
  }
  at = lseek(fd, (off_t)pos, hole ? SEEK_HOLE : SEEK_DATA);
  if (at < 0 && errno != ENXIO) return throw_errno(env, errno, "lseek");
  napi_create_int64(env, at < 0 ? -1 : (int64_t)at, &result);
  return result;
}

/*
 * scanJobDir(path) -> [names, stats] | errno: the job files of a queue's jobs/ directory and what
 * lstat says of each, in one call. A listing of 10,000 jobs made 10,000 lstatSync calls, and
 * Node's per-call cost (a Stats object, its dates) was most of the listing's time; here it is
 * one readdir and one fstatat per name, relative to the directory's fd, with no path to walk.
 *
 * Only names of fspl's glob `fspl-*.fspl` are kept, sorted by their bytes. names is one Buffer
 * of the names, each followed by a NUL (no file name holds one); stats is a Float64Array of
 * SCAN_FIELDS numbers per name, in the same order: where the name starts in names,
 * the errno of its fstatat (0 when it worked), st_mode, st_dev, st_ino, st_size, mtime's
 * seconds and nanoseconds, ctime's seconds and nanoseconds. These are the values Node's lstat
 * gives (the same doubles: its Stats are made from them), so identities compare equal to those
 * of fs.lstatSync. fstatat with AT_SYMLINK_NOFOLLOW is lstat: a symlink is reported as one, a
 * FIFO is never opened. The arrays are handed to JavaScript as they are, not copied again.
 * A directory that cannot be read returns its errno (a number) for the caller to report.
 */
#define SCAN_FIELDS 10

static int is_job_name(const char *name, size_t len) {
  return len >= 10 && memcmp(name, "fspl-", 5) == 0 && memcmp(name + len - 5, ".fspl", 5) == 0;
}

/* For qsort_r (glibc's and musl's argument order): `names` is the buffer the entries point into. */
static int scan_order(const void *a, const void *b, void *names) {
  return strcmp((const char *)names + (size_t)((const double *)a)[0], (const char *)names + (size_t)((const double *)b)[0]);
}

static void scan_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

/* Grow *buf to hold `need` bytes (doubling); 0, or ENOMEM. */
static int scan_reserve(void **buf, size_t *cap, size_t need, size_t first) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : first;
  while (c < need) c *= 2;
  void *p = realloc(*buf, c);
  if (!p) return ENOMEM;
  *buf = p;
  *cap = c;
  return 0;
}

/* lstat the names of stats[from, to), relative to dfd, into their fields. */
typedef struct {
  int dfd;
  const char *names;
  double *stats;
  size_t from, to;
} ScanPart;

static void *scan_stat_part(void *arg) {
  ScanPart *p = arg;
  for (size_t i = p->from; i < p->to; i++) {
    double *f = p->stats + i * SCAN_FIELDS;
    struct stat st;
    int rc;
    do rc = fstatat(p->dfd, p->names + (size_t)f[0], &st, AT_SYMLINK_NOFOLLOW); while (rc == -1 && errno == EINTR);
    if (rc == -1) {
      f[1] = errno;
    } else {
      f[2] = st.st_mode;
      f[3] = (double)st.st_dev;
      f[4] = (double)st.st_ino;
      f[5] = (double)st.st_size;
      f[6] = (double)st.st_mtim.tv_sec;
      f[7] = (double)st.st_mtim.tv_nsec;
      f[8] = (double)st.st_ctim.tv_sec;
      f[9] = (double)st.st_ctim.tv_nsec;
    }
  }
  return NULL;
}

/*
 * The lstats of a large directory, on several threads: one per SCAN_PER_THREAD names, at most
 * one per CPU this process may run on, and at most SCAN_THREADS. Each fstatat is a system call
 * of a few microseconds that mostly waits on the kernel's entry and exit: on two CPUs, 10,000
 * of them take 13 ms on two threads where one thread takes 23, half of a warm listing's own
 * time (bench/README.md, "Listing, an empty queue, raw delivery"); the CPU time is the same.
 * A thread that cannot be started leaves its part to this one.
 */
#define SCAN_THREADS 4
#define SCAN_PER_THREAD 1024
#define SCAN_STACK (64 * 1024)

static void scan_stat_all(int dfd, const char *names, double *stats, size_t count) {
  size_t n = count / SCAN_PER_THREAD;
  if (n > SCAN_THREADS) n = SCAN_THREADS;
  if (n > 1) {
    cpu_set_t cpus;
    size_t usable = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? (size_t)CPU_COUNT(&cpus) : 1;
    if (n > usable) n = usable;
  }
  if (n <= 1) {
    ScanPart whole = {dfd, names, stats, 0, count};
    scan_stat_part(&whole);
    return;
  }
  ScanPart parts[SCAN_THREADS];
  pthread_t threads[SCAN_THREADS];
  int started[SCAN_THREADS] = {0};
  /* The helpers start with every signal blocked (they inherit this thread's mask), as libuv's
   * own threads do: a signal for the process goes to a thread of Node's. A small stack, as
   * they only call fstatat, but never below what the platform allows (arm64's glibc: 128 KiB). */
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before);
  pthread_attr_t attr;
  int attr_ok = pthread_attr_init(&attr) == 0;
  if (attr_ok) {
    long least = sysconf(_SC_THREAD_STACK_MIN);
    pthread_attr_setstacksize(&attr, least > SCAN_STACK ? (size_t)least : SCAN_STACK);
  }
  for (size_t t = 0; t < n; t++) {
    parts[t] = (ScanPart){dfd, names, stats, count * t / n, count * (t + 1) / n};
    if (t > 0) started[t] = pthread_create(&threads[t], attr_ok ? &attr : NULL, scan_stat_part, &parts[t]) == 0;
  }
  if (attr_ok) pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &before, NULL);
  scan_stat_part(&parts[0]);
  for (size_t t = 1; t < n; t++) {
    if (started[t]) pthread_join(threads[t], NULL);
    else scan_stat_part(&parts[t]);
  }
}

static napi_value js_scan_job_dir(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result, names_buf, stats_ab, stats_arr;
  char path[4096];
  size_t path_len;
  bool no_follow = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok || path_len >= sizeof path - 1)
    return throw_errno(env, EINVAL, "scandir");
  if (argc >= 2) napi_get_value_bool(env, argv[1], &no_follow);

  /* O_NONBLOCK: should `path` be a FIFO, O_DIRECTORY fails it before any open could wait.
   * O_NOFOLLOW (asked for): a symlink at `path` itself is ENOTDIR, never followed. */
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC | (no_follow ? O_NOFOLLOW : 0));
  DIR *dir = dfd < 0 ? NULL : fdopendir(dfd);
  if (!dir) {
    int err = errno;
    if (dfd >= 0) close(dfd);
    napi_create_int32(env, err, &result);
    return result;
  }
  char *names = NULL;
  double *stats = NULL;
  size_t names_len = 0, names_cap = 0, count = 0, stats_cap = 0;
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *d = readdir(dir);
    if (!d) {
      err = errno;
      break;
    }
    size_t len = strlen(d->d_name);
    if (!is_job_name(d->d_name, len)) continue;
    if ((err = scan_reserve((void **)&names, &names_cap, names_len + len + 1, 64 * 1024)) != 0 ||
        (err = scan_reserve((void **)&stats, &stats_cap, (count + 1) * SCAN_FIELDS * sizeof *stats, 1024 * SCAN_FIELDS * sizeof *stats)) != 0)
      break;
    double *f = stats + count++ * SCAN_FIELDS;
    memset(f, 0, SCAN_FIELDS * sizeof *f);
    f[0] = (double)names_len;
    memcpy(names + names_len, d->d_name, len + 1);
    names_len += len + 1;
  }
  if (!err) scan_stat_all(dfd, names, stats, count);
  closedir(dir);
  if (err) {
    free(names);
    free(stats);
    napi_create_int32(env, err, &result);
    return result;
  }
  if (count) qsort_r(stats, count, SCAN_FIELDS * sizeof *stats, scan_order, names);
  /* The names in the same order, in a buffer of exactly their size. */
  char *sorted = names_len ? malloc(names_len) : NULL;
  if (names_len && !sorted) {
    free(names);
    free(stats);
    return throw_errno(env, ENOMEM, "scandir");
  }
  for (size_t i = 0, at = 0; i < count; i++) {
    double *f = stats + i * SCAN_FIELDS;
    size_t len = strlen(names + (size_t)f[0]) + 1;
    memcpy(sorted + at, names + (size_t)f[0], len);
    f[0] = (double)at;
    at += len;
  }
  free(names);
  names = sorted;
  /* Hand over exactly what is used: realloc to a smaller size keeps the data. */
  double *exact = count ? realloc(stats, count * SCAN_FIELDS * sizeof *stats) : NULL;
  if (exact) stats = exact;
  napi_status ok;
  if (names_len) {
    ok = napi_create_external_buffer(env, names_len, names, scan_free, NULL, &names_buf);
    if (ok != napi_ok) free(names);
  } else {
    free(names);
    ok = napi_create_buffer(env, 0, NULL, &names_buf);
  }
  if (ok == napi_ok && count) {
    ok = napi_create_external_arraybuffer(env, stats, count * SCAN_FIELDS * sizeof *stats, scan_free, NULL, &stats_ab);
    if (ok != napi_ok) free(stats);
  } else {
    free(stats);
    if (ok == napi_ok) ok = napi_create_arraybuffer(env, 0, NULL, &stats_ab);
  }
  if (ok == napi_ok) ok = napi_create_typedarray(env, napi_float64_array, count * SCAN_FIELDS, stats_ab, 0, &stats_arr);
  if (ok != napi_ok) return throw_errno(env, ENOMEM, "scandir");
  napi_create_array_with_length(env, 2, &result);
  napi_set_element(env, result, 0, names_buf);
  napi_set_element(env, result, 1, stats_arr);
  return result;
}

/*
 * readPipe(fd, onChunk) -> { unref(), close() }. fd (the read end of a pipe of ours) is made
 * non-blocking and watched for input on the main thread's event loop; each chunk read is
 * passed to onChunk(buffer), and end-of-file (or a read error, which ends the pipe for us as
 * EOF would) to onChunk(null), after which fd is closed. While watched it keeps the event loop
 * alive, like a socket; unref() stops that (output of a daemon left holding the pipe is still
 * passed on while fspool runs for other reasons). close() stops watching and closes fd without
 * a call. The callback runs through napi_make_callback, so promises it settles are run at once,
 * as after a socket's 'data' event. If readPipe itself throws, fd is still the caller's to close.
 */
#define READ_PIPE_CHUNK 65536

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref on_chunk;
  napi_async_context async;
  int fd;
  int closing;
  int js_gone;
} pipe_reader;

static void pipe_reader_free_if_done(pipe_reader *r) {
  if (r->closing == 2 && r->js_gone) free(r);
}

/* Released here, after the loop let go of the handle, not inside a call that uses them. */
static void pipe_reader_closed(uv_handle_t *h) {
  pipe_reader *r = (pipe_reader *)h->data;
  napi_handle_scope scope;
  napi_open_handle_scope(r->env, &scope);
  napi_delete_reference(r->env, r->on_chunk);
  napi_async_destroy(r->env, r->async);
  napi_close_handle_scope(r->env, scope);
  if (r->fd >= 0) close(r->fd);
  r->closing = 2;
  pipe_reader_free_if_done(r);
}

static void pipe_reader_stop(pipe_reader *r) {
  if (r->closing) return;
  r->closing = 1;
  uv_poll_stop(&r->poll);
  uv_close((uv_handle_t *)&r->poll, pipe_reader_closed);
}

static void pipe_reader_call(pipe_reader *r, napi_value arg) {
  napi_value cb, recv, result;
  if (r->closing) return;
  if (napi_get_reference_value(r->env, r->on_chunk, &cb) != napi_ok || cb == NULL) return;
  napi_get_global(r->env, &recv); /* napi_make_callback wants an object */
  if (napi_make_callback(r->env, r->async, recv, cb, 1, &arg, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(r->env, &e);
    napi_fatal_exception(r->env, e);
  }
}

/*
 * One read per wake-up: the poll is level-triggered, so more input wakes it again on the next
 * turn of the loop. A receiver writing stderr faster than it is passed on must not hold the
 * loop (its timeout, forwarded signals, its exit) for as long as it writes.
 */
static void pipe_reader_ready(uv_poll_t *h, int status, int events) {
  pipe_reader *r = (pipe_reader *)h->data;
  (void)events;
  if (r->closing) return;
  char buf[READ_PIPE_CHUNK];
  ssize_t n = -1;
  if (status >= 0) {
    do n = read(r->fd, buf, sizeof buf); while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  }
  napi_handle_scope scope;
  napi_open_handle_scope(r->env, &scope);
  napi_value arg;
  void *data;
  if (n > 0) {
    if (napi_create_buffer_copy(r->env, (size_t)n, buf, &data, &arg) == napi_ok) pipe_reader_call(r, arg);
  } else {
    napi_get_null(r->env, &arg);
    pipe_reader_call(r, arg);
    pipe_reader_stop(r);
  }
  napi_close_handle_scope(r->env, scope);
}

static void pipe_reader_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  pipe_reader *r = (pipe_reader *)data;
  r->js_gone = 1;
  pipe_reader_free_if_done(r);
}

static pipe_reader *pipe_reader_this(napi_env env, napi_callback_info info) {
  napi_value self;
  void *r = NULL;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  napi_unwrap(env, self, &r);
  return (pipe_reader *)r;
}

static napi_value js_pipe_reader_unref(napi_env env, napi_callback_info info) {
  pipe_reader *r = pipe_reader_this(env, info);
  if (r && !r->closing) uv_unref((uv_handle_t *)&r->poll);
  return NULL;
}

static napi_value js_pipe_reader_close(napi_env env, napi_callback_info info) {
  pipe_reader *r = pipe_reader_this(env, info);
  if (r) pipe_reader_stop(r);
  return NULL;
}

static napi_value js_read_pipe(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self, fn, name;
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype cb_type = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &cb_type);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || cb_type != napi_function) return throw_errno(env, EINVAL, "readPipe");
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_errno(env, EINVAL, "readPipe");
  pipe_reader *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, ENOMEM, "readPipe");
  r->env = env;
  r->fd = fd;
  r->poll.data = r;
  /* uv_poll_init makes fd non-blocking (libuv >= 1.2.2). */
  int rc = uv_poll_init(loop, &r->poll, fd);
  if (rc != 0) {
    free(r);
    return throw_errno(env, -rc, "uv_poll_init");
  }
  napi_create_reference(env, argv[1], 1, &r->on_chunk);
  napi_create_string_utf8(env, "fspool:stderr", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &r->async);
  napi_create_object(env, &self);
  napi_create_function(env, "unref", NAPI_AUTO_LENGTH, js_pipe_reader_unref, NULL, &fn);
  napi_set_named_property(env, self, "unref", fn);
  napi_create_function(env, "close", NAPI_AUTO_LENGTH, js_pipe_reader_close, NULL, &fn);
  napi_set_named_property(env, self, "close", fn);
  if (napi_wrap(env, self, r, pipe_reader_finalize, NULL, NULL) != napi_ok) {
    r->js_gone = 1;
    r->fd = -1; /* a throw leaves fd to the caller */
    pipe_reader_stop(r);
    return throw_errno(env, ENOMEM, "readPipe");
  }
  rc = uv_poll_start(&r->poll, UV_READABLE | UV_DISCONNECT, pipe_reader_ready);
  if (rc != 0) {
    r->fd = -1;
    pipe_reader_stop(r);
    return throw_errno(env, -rc, "uv_poll_start");
  }
  return self;
}

/*
 * mapFile(path, latin1) -> a one-byte string (latin1) or an ArrayBuffer of the file's bytes,
 * backed by a private mapping of the file (read-only for the string; the buffer's pages are
 * copied on a write, never written to the file); undefined where Node cannot take one (an
 * empty file, one over MAP_MOST; a Node without external strings, or with its sandbox refusing
 * external buffers): the caller reads the file then.
 *
 * Why: on the virtual machines fspool is measured on, a page of fresh anonymous memory costs
 * ~10 us to fault in, and reading the ~400 KB bundle, its latin1 string and its ~400 KB code
 * cache into such memory costs every start ~5 ms; a mapping of the page cache faults in 16
 * pages at a time, and V8 touches only the parts of the source it compiles (bench/README.md,
 * "Cold start"). V8 only reads the string and the cache. The mapping is of the file as it is:
 * a file rewritten in place (not replaced) under a running fspool is, as for any mapped
 * library, undefined; the build and npm replace files.
 *
 * node_api_create_external_string_latin1 is an experimental Node-API in Node 20 and a stable
 * one later: it is looked up at run time, so that this module does not declare the
 * experimental API version. When it copies the string, or fails, it may already have called
 * the finalizer (which unmaps): the mapping is then never touched here again (a failure may
 * leak it; unmapping it twice could unmap what another thread mapped meanwhile).
 */
#define MAP_MOST (256u << 20)

typedef napi_status (*create_latin1_fn)(napi_env, char *, size_t, napi_finalize, void *, napi_value *, bool *);

static void unmap_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

static napi_value js_map_file(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  char path[4096];
  size_t len = 0;
  bool latin1 = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  /* The path's whole length first: a longer one would be cut short, maybe inside a character. */
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok || len >= sizeof path ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || memchr(path, 0, len) != NULL ||
      napi_get_value_bool(env, argv[1], &latin1) != napi_ok) {
    napi_throw_type_error(env, NULL, "mapFile(path, latin1): a path without NUL, shorter than 4096 bytes");
    return NULL;
  }
  napi_get_undefined(env, &result);
  static create_latin1_fn create_latin1;
  static bool looked;
  if (!looked) {
    create_latin1 = (create_latin1_fn)dlsym(RTLD_DEFAULT, "node_api_create_external_string_latin1");
    looked = true;
  }
  if (latin1 && !create_latin1) return result;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open");
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "fstat");
  }
  if (!S_ISREG(st.st_mode) || st.st_size == 0 || (uint64_t)st.st_size > MAP_MOST) {
    close(fd);
    return result;
  }
  size_t size = (size_t)st.st_size;
  void *p = mmap(NULL, size, latin1 ? PROT_READ : PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return throw_errno(env, e, "mmap");
  napi_value value;
  napi_status status;
  if (latin1) {
    bool copied = false;
    status = create_latin1(env, p, size, unmap_finalize, (void *)(uintptr_t)size, &value, &copied);
    if (status != napi_ok) return result;
  } else {
    status = napi_create_external_arraybuffer(env, p, size, unmap_finalize, (void *)(uintptr_t)size, &value);
  }
  if (status != napi_ok) {
    munmap(p, size);
    return result;
  }
  return value;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, num;
  napi_create_function(env, "flock", NAPI_AUTO_LENGTH, js_flock, NULL, &fn);
  napi_set_named_property(env, exports, "flock", fn);
  napi_create_function(env, "pipe", NAPI_AUTO_LENGTH, js_pipe, NULL, &fn);
  napi_set_named_property(env, exports, "pipe", fn);
  napi_create_function(env, "readPipe", NAPI_AUTO_LENGTH, js_read_pipe, NULL, &fn);
  napi_set_named_property(env, exports, "readPipe", fn);
  napi_create_function(env, "reap", NAPI_AUTO_LENGTH, js_reap, NULL, &fn);
  napi_set_named_property(env, exports, "reap", fn);
  napi_create_function(env, "spawnHelper", NAPI_AUTO_LENGTH, js_spawn_helper, NULL, &fn);
  napi_set_named_property(env, exports, "spawnHelper", fn);
  napi_create_function(env, "childStatus", NAPI_AUTO_LENGTH, js_child_status, NULL, &fn);
  napi_set_named_property(env, exports, "childStatus", fn);
  napi_create_function(env, "helperSend", NAPI_AUTO_LENGTH, js_helper_send, NULL, &fn);
  napi_set_named_property(env, exports, "helperSend", fn);
  napi_create_function(env, "helperRecv", NAPI_AUTO_LENGTH, js_helper_recv, NULL, &fn);
  napi_set_named_property(env, exports, "helperRecv", fn);
  napi_create_function(env, "cfbXor", NAPI_AUTO_LENGTH, js_cfb_xor, NULL, &fn);
  napi_set_named_property(env, exports, "cfbXor", fn);
  napi_create_function(env, "clearNonblock", NAPI_AUTO_LENGTH, js_clear_nonblock, NULL, &fn);
  napi_set_named_property(env, exports, "clearNonblock", fn);
  napi_create_function(env, "fsIds", NAPI_AUTO_LENGTH, js_fs_ids, NULL, &fn);
  napi_set_named_property(env, exports, "fsIds", fn);
  napi_create_function(env, "groups", NAPI_AUTO_LENGTH, js_groups, NULL, &fn);
  napi_set_named_property(env, exports, "groups", fn);
  napi_create_function(env, "isatty", NAPI_AUTO_LENGTH, js_isatty, NULL, &fn);
  napi_set_named_property(env, exports, "isatty", fn);
  napi_create_function(env, "winsize", NAPI_AUTO_LENGTH, js_winsize, NULL, &fn);
  napi_set_named_property(env, exports, "winsize", fn);
  napi_create_function(env, "sdNotify", NAPI_AUTO_LENGTH, js_sd_notify, NULL, &fn);
  napi_set_named_property(env, exports, "sdNotify", fn);
  napi_create_function(env, "pending", NAPI_AUTO_LENGTH, js_pending, NULL, &fn);
  napi_set_named_property(env, exports, "pending", fn);
  napi_create_function(env, "sha256", NAPI_AUTO_LENGTH, js_sha256, NULL, &fn);
  napi_set_named_property(env, exports, "sha256", fn);
  napi_create_function(env, "seek", NAPI_AUTO_LENGTH, js_seek, NULL, &fn);
  napi_set_named_property(env, exports, "seek", fn);
  napi_create_function(env, "mapFile", NAPI_AUTO_LENGTH, js_map_file, NULL, &fn);
  napi_set_named_property(env, exports, "mapFile", fn);
  napi_create_function(env, "scanJobDir", NAPI_AUTO_LENGTH, js_scan_job_dir, NULL, &fn);
  napi_set_named_property(env, exports, "scanJobDir", fn);
  napi_create_int32(env, LOCK_EX, &num);
  napi_set_named_property(env, exports, "LOCK_EX", num);
  napi_create_int32(env, LOCK_NB, &num);
  napi_set_named_property(env, exports, "LOCK_NB", num);
  napi_create_int32(env, LOCK_UN, &num);
  napi_set_named_property(env, exports, "LOCK_UN", num);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
