/*
 * fspool-exec: how fspool starts every receiver.
 *
 * 1. Byte-exact argv and environment. Node's child_process turns arguments and environment
 *    values into UTF-8, but a job's params and FSPL_SET_ values are arbitrary bytes. fspool
 *    sends the real bytes on fd 3 (a socket):
 *      "ARGC\0ENVC\0GUARD\0" then ARGC strings and ENVC "NAME=value" strings, each ending in
 *      NUL; then it shuts down its side. GUARD is "1" if a guardian is wanted.
 *    We exec in place, so the receiver keeps this pid, process group (libuv made us a session
 *    and group leader) and stdio. fd 3 is made close-on-exec: if exec fails we write
 *    "\002ERRNO\n" and the reason to it and exit 127, and fspool reports "cannot run"; if exec
 *    succeeds fspool sees fd 3 close with nothing written.
 *
 * 2. The guardian (spec/processing.md, "If fspool dies"). When fspool dies, the kernel closes
 *    its files before anything else, and a receiver reading a pipe from fspool would see a
 *    clean EOF on a truncated payload. So fspool passes:
 *      fd 4: the read end of a lifeline pipe, whose write end only fspool holds;
 *      fd 5 (optional): a copy of the write end of the receiver's stdin pipe.
 *    We fork a guardian, detached into its own session (so kills aimed at the receiver's group
 *    miss it) and reparented to init (so the receiver has no unexpected child). It holds fd 5
 *    and reads fd 4:
 *      'E'  fspool decided the payload is whole: close our copy of the stdin pipe;
 *      'X'  the job is over: exit;
 *      EOF  fspool died without saying so: SIGKILL the receiver's process group, then exit
 *           (closing the last write end only after the receiver is dead).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define CTL_FD 3
#define LIFELINE_FD 4
#define STDIN_COPY_FD 5

static char *next_str(char **p, char *end) {
  char *s = *p;
  char *nul = memchr(s, '\0', (size_t)(end - s));
  if (!nul) return NULL;
  *p = nul + 1;
  return s;
}

static void fail(const char *what) {
  dprintf(CTL_FD, "%s", what);
  _exit(127);
}

static void guardian(pid_t pgid) {
  /* First: fspool may already be dead, and writing to it (fd 3) must not kill us by SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  setsid();
  /* Our pid for fspool, which reaps us itself when it is PID 1 (a container without an init):
   * then we are its child once reparented, and nobody else would. \001 marks it apart from an
   * exec error on the same channel. */
  dprintf(CTL_FD, "\001%d\n", (int)getpid());
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) close(null);
  }
  close(CTL_FD);
  for (;;) {
    char c;
    ssize_t n = read(LIFELINE_FD, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 1 && c == 'E') {
      close(STDIN_COPY_FD);
      continue;
    }
    if (n == 1 && c == 'X') _exit(0);
    /* EOF or error: fspool is gone without a word. */
    kill(-pgid, SIGKILL);
    _exit(0);
  }
}

int main(void) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  if (!buf) fail("fspool-exec: out of memory");
  for (;;) {
    if (len == cap) {
      cap *= 2;
      char *nb = realloc(buf, cap);
      if (!nb) fail("fspool-exec: out of memory");
      buf = nb;
    }
    ssize_t n = read(CTL_FD, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("fspool-exec: cannot read the request");
    if (n == 0) break;
    len += (size_t)n;
  }
  char *p = buf, *end = buf + len;
  char *a = next_str(&p, end), *e = next_str(&p, end), *g = next_str(&p, end);
  if (!a || !e || !g) fail("fspool-exec: bad request");
  long argc = strtol(a, NULL, 10), envc = strtol(e, NULL, 10);
  if (argc < 1 || envc < 0) fail("fspool-exec: bad request");
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  char **envp = calloc((size_t)envc + 1, sizeof *envp);
  if (!argv || !envp) fail("fspool-exec: out of memory");
  for (long i = 0; i < argc; i++)
    if (!(argv[i] = next_str(&p, end))) fail("fspool-exec: bad request");
  for (long i = 0; i < envc; i++)
    if (!(envp[i] = next_str(&p, end))) fail("fspool-exec: bad request");
  /* Exactly the announced strings: anything left over means an entry was split somewhere. */
  if (p != end) fail("fspool-exec: bad request");

  if (strcmp(g, "1") == 0) {
    pid_t pgid = getpgrp();
    pid_t first = fork();
    if (first < 0) fail("fspool-exec: fork failed");
    if (first == 0) {
      pid_t second = fork();
      if (second == 0) guardian(pgid);
      _exit(second < 0 ? 1 : 0);
    }
    int status;
    while (waitpid(first, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("fspool-exec: cannot start the guardian");
  }
  /* The receiver keeps none of this. */
  close(LIFELINE_FD);
  close(STDIN_COPY_FD);
  fcntl(CTL_FD, F_SETFD, FD_CLOEXEC);
  execvpe(argv[0], argv, envp);
  /* \002 and the errno first, apart from the text: fspool tells E2BIG (the job's params and
   * variables are too large) from a command that cannot be found or run. */
  int err = errno;
  char msg[512];
  snprintf(msg, sizeof msg, "\002%d\n%s: %s", err, argv[0], strerror(err));
  fail(msg);
  return 127;
}
