/*
 * fspool-spawner: starts every receiver and decoder of one fspool process, and guards them.
 * spec/processing.md ("Starting a child", "If fspool dies") says what and why; this is how.
 *
 * fspool starts it once, on its first child, with posix_spawn (src/sys/spawner.ts), in a
 * session of its own, with a unix stream socket as fd 3 and /dev/null as 0-2. It is small and
 * single-threaded, so nothing it does can be blocked by a lock another thread holds: fspool,
 * which has threads (libuv's pool, V8's) and much memory, never forks.
 *
 * Requests, each "u32 LEN, u8 TYPE, then LEN-1 bytes" (integers little-endian):
 *   'S' u32 ARGC, u32 ENVC, u8 NFDS (3 or 4), then ARGC + ENVC strings each ending in NUL and
 *       nothing else; NFDS fds ride with it (SCM_RIGHTS): the child's stdin, stdout, stderr,
 *       and optionally the write end of the child's stdin pipe, which we hold until 'E'.
 *       The child is started as fspool's own child (CLONE_PARENT), in a session and process
 *       group of its own, with the three fds as 0-2 (blocking), every signal at its default
 *       and none blocked, then execvpe. Reply: 'P' PID OWN once the exec succeeded, or
 *       'F' ERRNO PID if it failed (PID: the child that exited 127, which fspool reaps; 0 if
 *       none started, or if it was ours and we reaped it). OWN is 1 if the child is ours (below).
 *   'E' i32 PID  the payload is whole: close our copy of the child's stdin pipe.
 *   'R' i32 PID  fspool is done with the child: forget it (and reap it, if it is ours).
 * Replies are 16 bytes: u8 TYPE, 3 bytes of padding, then three i32. One more comes unasked:
 *   'X' PID CODE SIGNAL  our own child PID exited (CODE -1 if SIGNAL killed it); a SIGCHLD to
 *       fspool follows, so it reads the report without watching the socket.
 *
 * Children are fspool's, not ours: fspool waits for them (SIGCHLD, waitid) and reaps them, and
 * they see fspool as their parent, as under fspl. fspool reaps a child only when it releases it,
 * so until then its pid, and thus its process group id, cannot be reused, and signals to the
 * group (ours or fspool's) cannot hit a stranger.
 *
 * Unless the kernel refuses CLONE_PARENT with EINVAL, as qemu-user does (it runs CLONE_VFORK
 * as a fork, and refuses a fork with any other flag): then, from that first spawn on, children
 * are our own (clone without CLONE_PARENT). We learn of their exits from SIGCHLD (a self-pipe
 * wakes our poll), read each status with waitid(WNOWAIT), report it ('X'), and reap the child
 * only once fspool has released it, so the pid and group id are held just as long. Exec's errno
 * comes back through a close-on-exec pipe, since under qemu the child shares no memory with us.
 *
 * End of file on fd 3 (fspool died, or exited leaving children it had not released): every
 * such child's process group gets SIGKILL, and only then do we exit, closing the stdin pipe
 * copies we hold, so no receiver ever reads a clean EOF after a truncated payload. SIGKILL
 * takes effect within kill() (each process of the group is marked as exiting before kill
 * returns), so no code of the receiver runs after it; we do not wait for the deaths, which a
 * process stuck in the kernel could put off forever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQ_FD 3
#define MAX_FDS 4
/* Far beyond any request fspool makes (a packet's params are at most 16 MiB); fspool refuses
 * longer ones as E2BIG itself. */
#define MAX_REQUEST (256u << 20)

struct child {
  pid_t pid;
  int stdin_copy; /* -1 once closed */
  /* Ours, not fspool's (started without CLONE_PARENT): we report its exit, and reap it. */
  unsigned char own;
  unsigned char exited;   /* own: its exit was reported to fspool */
  unsigned char released; /* own: fspool released it before it exited */
};

static struct child *children;
static size_t n_children, cap_children;

/* The kernel refused CLONE_PARENT (qemu-user does): every child from then on is our own. */
static int own_children;
/* fspool, our parent, whom we tell of our own children's exits. */
static pid_t fspool_pid;
/* A SIGCHLD writes a byte here, which wakes the loop's poll (the self-pipe trick). */
static int sigchld_r = -1, sigchld_w = -1;

/* Fds that came with requests not yet handled, oldest first. */
static int fdq[64];
static size_t fdq_len;

/* fspool is gone (or broke the protocol): nobody will release our children. */
static void die_killing(void) {
  for (size_t i = 0; i < n_children; i++)
    if (!children[i].released) kill(-children[i].pid, SIGKILL);
  _exit(0);
}

static void put_le(unsigned char *p, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(u >> (8 * i));
}

static uint32_t u32_at(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void reply(char type, int32_t a, int32_t b, int32_t c) {
  unsigned char rec[16] = {0};
  rec[0] = (unsigned char)type;
  put_le(rec + 4, a);
  put_le(rec + 8, b);
  put_le(rec + 12, c);
  size_t off = 0;
  while (off < sizeof rec) {
    ssize_t n = send(REQ_FD, rec + off, sizeof rec - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die_killing();
    off += (size_t)n;
  }
}

struct exec_args {
  int fds[3];
  char **argv, **envp;
  volatile int err; /* written by the child: it shares our memory until it execs */
  /* Own children only: the write end of a close-on-exec pipe that gets exec's errno. Under
   * qemu-user the child is a fork that shares nothing with us, so `err` never comes back. */
  int err_pipe;
};

/*
 * The child, on a stack of its own in our memory (CLONE_VM | CLONE_VFORK: we are suspended
 * until it execs or exits; under qemu-user, a fork on a copy of it). Only async-signal-safe
 * calls; execvpe is what glibc's posix_spawnp runs in its own child. Never returns.
 */
static int child_exec(void *p) {
  struct exec_args *a = p;
  if (setsid() < 0) goto fail;
  /* The fds came to us close-on-exec, at 5 or above: no dup2 here undoes another. */
  for (int i = 0; i < 3; i++)
    if (dup2(a->fds[i], i) < 0) goto fail;
  /* O_NONBLOCK lives in the open file description, which fspool or a shell may have set. */
  for (int i = 0; i < 3; i++) {
    int fl = fcntl(i, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(i, F_SETFL, fl & ~O_NONBLOCK);
  }
  /* Every signal to its default, by the system call itself: glibc's sigaction refuses the two
   * it keeps for its threads (32 and 33), which its posix_spawn left ignored in us, and an
   * ignored signal stays ignored across exec. A zeroed kernel sigaction is SIG_DFL with no
   * flags and an empty mask, whatever the architecture's field order. (SIGKILL and SIGSTOP
   * fail with EINVAL.) */
  static const unsigned long dfl[8];
  for (int s = 1; s < NSIG; s++) syscall(SYS_rt_sigaction, s, dfl, NULL, (size_t)(NSIG - 1) / 8);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execvpe(a->argv[0], a->argv, a->envp);
fail:
  a->err = errno ? errno : EIO;
  if (a->err_pipe >= 0) {
    int e = a->err;
    ssize_t n = write(a->err_pipe, &e, sizeof e);
    (void)n;
  }
  _exit(127);
}

static void on_sigchld(int sig) {
  (void)sig;
  int e = errno;
  ssize_t n = write(sigchld_w, "", 1); /* full: a wake-up is pending anyway */
  (void)n;
  errno = e;
}

/* CLONE_PARENT was refused: from now on children are ours, and SIGCHLD must wake the loop.
 * Returns 0, or the errno that leaves us unable to start children. */
static int become_parent(void) {
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return errno;
  sigchld_r = p[0];
  sigchld_w = p[1];
  struct sigaction sa = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
  sigfillset(&sa.sa_mask);
  if (sigaction(SIGCHLD, &sa, NULL) < 0) return errno;
  own_children = 1;
  return 0;
}

/* Start the child as our own; its pid, or 0 with *err set (a child that failed to exec is
 * reaped here). Exec's errno comes through a close-on-exec pipe, as in posix_spawn
 * implementations that fork: end of file on it means the exec happened. */
static pid_t start_own(struct exec_args *a, char *stack_top, int *err) {
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) < 0) {
    *err = errno;
    return 0;
  }
  a->err_pipe = ep[1];
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  /* qemu-user turns CLONE_VM | CLONE_VFORK into a fork, and refuses any other flag on it. */
  pid_t pid = clone(child_exec, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, a);
  int clone_err = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  if (pid < 0) {
    close(ep[0]);
    *err = clone_err;
    return 0;
  }
  int e = 0;
  size_t got = 0;
  while (got < sizeof e) {
    ssize_t n = read(ep[0], (char *)&e + got, sizeof e - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(ep[0]);
  if (got == 0) return pid;
  *err = got == sizeof e && e ? e : EIO;
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return 0;
}

/* A SIGCHLD came: tell fspool of each own child that has exited ('X'), keeping it a zombie
 * (WNOWAIT) until fspool releases it, so its pid and group id cannot be reused meanwhile; one
 * released already is reaped now. Then a SIGCHLD to fspool makes it read the reports. */
static void report_exits(void) {
  char buf[64];
  while (read(sigchld_r, buf, sizeof buf) > 0) {
  }
  int told = 0;
  for (size_t i = 0; i < n_children;) {
    struct child *c = &children[i];
    siginfo_t si;
    si.si_pid = 0;
    if (!c->own || c->exited || waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0) {
      i++;
      continue;
    }
    int killed = si.si_code != CLD_EXITED;
    reply('X', c->pid, killed ? -1 : si.si_status, killed ? si.si_status : 0);
    told = 1;
    if (c->released) {
      while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR) {
      }
      *c = children[--n_children];
      continue;
    }
    c->exited = 1;
    i++;
  }
  if (told && getppid() == fspool_pid) kill(fspool_pid, SIGCHLD);
}

/* Split `n` NUL-terminated strings off [p, end) into v; returns what follows them. */
static char *split(char *p, char *end, char **v, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    char *nul = memchr(p, '\0', (size_t)(end - p));
    if (!nul) return NULL;
    v[i] = p;
    p = nul + 1;
  }
  return p;
}

/* The top of a stack of at least `size` bytes for the next child, or NULL with *err set. One
 * serves every child: each uses it only until its exec (or its _exit), and we are suspended
 * meanwhile (CLONE_VFORK), or it has a copy (a fork, under qemu). Kept rather than mapped and
 * unmapped per child: on some virtual machines a fresh page's first touch costs ~12 us, and an
 * unmap stops every CPU the child ran on to flush its TLB, before the reply. */
static char *child_stack_top(size_t size, int *err) {
  static char *stack;
  static size_t have;
  if (size <= have) return stack + have;
  void *s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (s == MAP_FAILED) {
    *err = errno;
    return NULL;
  }
  if (stack) munmap(stack, have);
  stack = s;
  have = size;
  return stack + have;
}

/* body: u32 argc, u32 envc, u8 nfds, then the strings; fds: what came with it. */
static void spawn_request(unsigned char *body, size_t len, int fds[MAX_FDS], int nfds) {
  uint32_t argc = u32_at(body), envc = u32_at(body + 4);
  char *strings = (char *)body + 9, *end = (char *)body + len;
  size_t room = (size_t)(end - strings);
  struct exec_args a = {.fds = {fds[0], fds[1], fds[2]}, .err_pipe = -1};
  int err = 0;
  /* Each string takes at least its NUL byte, so the counts are bounded by the length. */
  if (argc < 1 || argc > room || envc > room - argc) err = EPROTO;
  if (!err && (!(a.argv = calloc((size_t)argc + 1, sizeof *a.argv)) || !(a.envp = calloc((size_t)envc + 1, sizeof *a.envp)))) err = ENOMEM;
  /* Exactly the announced strings, and nothing after them. */
  char *rest = err ? NULL : split(strings, end, a.argv, argc);
  if (!err && (!rest || split(rest, end, a.envp, envc) != end)) err = EPROTO;
  if (!err && n_children == cap_children) {
    size_t cap = cap_children ? cap_children * 2 : 8;
    struct child *nc = realloc(children, cap * sizeof *nc);
    if (!nc) err = ENOMEM;
    else {
      children = nc;
      cap_children = cap;
    }
  }
  /* The child's stack: room for execvpe's copy of argv (a script without #! is run by
   * /bin/sh with argv shifted) and its PATH buffer. */
  size_t stack_size = (((size_t)argc + 2) * sizeof(char *) + (64 << 10) + 4095) & ~(size_t)4095;
  char *stack_top = err ? NULL : child_stack_top(stack_size, &err);
  pid_t pid = 0;
  if (!err && !own_children) {
    /* No signal may run a handler of ours on the child's stack (this is cheap). */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid = clone(child_exec, stack_top, CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD, &a);
    if (pid < 0) {
      err = errno;
      pid = 0;
      if (err == EINVAL) err = become_parent();
    } else if (a.err) {
      err = a.err;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
  }
  if (!err && own_children) pid = start_own(&a, stack_top, &err);
  free(a.argv);
  free(a.envp);
  /* The child has its own copies of its stdio now. */
  for (int i = 0; i < 3; i++) close(fds[i]);
  if (err) {
    if (nfds > 3) close(fds[3]);
    reply('F', err, pid, 0);
    return;
  }
  children[n_children++] = (struct child){.pid = pid, .stdin_copy = nfds > 3 ? fds[3] : -1, .own = (unsigned char)own_children};
  reply('P', pid, own_children, 0);
}

/* One complete request of `len` bytes, its type byte first. */
static void handle(unsigned char *msg, size_t len) {
  if (msg[0] == 'S') {
    if (len < 10 || msg[9] < 3 || msg[9] > MAX_FDS || fdq_len < msg[9]) die_killing();
    int fds[MAX_FDS], nfds = msg[9];
    memcpy(fds, fdq, (size_t)nfds * sizeof *fds);
    fdq_len -= (size_t)nfds;
    memmove(fdq, fdq + nfds, fdq_len * sizeof *fdq);
    spawn_request(msg + 1, len - 1, fds, nfds);
    return;
  }
  if ((msg[0] != 'E' && msg[0] != 'R') || len != 5) die_killing();
  pid_t pid = (pid_t)u32_at(msg + 1);
  for (size_t i = 0; i < n_children; i++) {
    struct child *c = &children[i];
    if (c->pid != pid) continue;
    if (c->stdin_copy >= 0) close(c->stdin_copy);
    c->stdin_copy = -1;
    if (msg[0] != 'R') return;
    if (c->own && !c->exited) {
      /* Reaped once it has exited (report_exits). */
      c->released = 1;
      return;
    }
    if (c->own)
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
      }
    *c = children[--n_children];
    return;
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  fcntl(REQ_FD, F_SETFD, FD_CLOEXEC);
  fspool_pid = getppid();
  size_t cap = 1 << 16, len = 0;
  unsigned char *in = malloc(cap);
  if (!in) return 1;
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * 16)];
  } ctl;
  for (;;) {
    if (len == cap) {
      unsigned char *nb = realloc(in, cap * 2);
      if (!nb) die_killing();
      in = nb;
      cap *= 2;
    }
    if (own_children) {
      struct pollfd pf[2] = {{.fd = REQ_FD, .events = POLLIN}, {.fd = sigchld_r, .events = POLLIN}};
      if (poll(pf, 2, -1) < 0) continue; /* EINTR: a SIGCHLD, which the pipe holds too */
      if (pf[1].revents) report_exits();
      if (!pf[0].revents) continue;
    }
    struct iovec iov = {.iov_base = in + len, .iov_len = cap - len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t n = recvmsg(REQ_FD, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || (mh.msg_flags & MSG_CTRUNC)) die_killing();
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      if (fdq_len + k > sizeof fdq / sizeof *fdq) die_killing();
      memcpy(fdq + fdq_len, CMSG_DATA(cm), k * sizeof(int));
      fdq_len += k;
    }
    len += (size_t)n;
    size_t off = 0;
    while (len - off >= 4) {
      uint32_t mlen = u32_at(in + off);
      if (mlen < 1 || mlen > MAX_REQUEST) die_killing();
      if (len - off - 4 < mlen) {
        if (mlen + 4 > cap) {
          /* Room for the whole request. */
          size_t ncap = cap;
          while (ncap < mlen + 4) ncap *= 2;
          unsigned char *nb = malloc(ncap);
          if (!nb) die_killing();
          memcpy(nb, in + off, len - off);
          free(in);
          in = nb;
          cap = ncap;
          len -= off;
          off = 0;
        }
        break;
      }
      handle(in + off + 4, mlen);
      off += 4 + (size_t)mlen;
    }
    memmove(in, in + off, len - off);
    len -= off;
    if (len == 0 && cap > (1u << 20)) {
      /* Give back what a long request took. */
      unsigned char *nb = realloc(in, 1 << 16);
      if (nb) {
        in = nb;
        cap = 1 << 16;
      }
    }
  }
}
