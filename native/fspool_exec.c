/*
 * fspool-exec: exec a command with byte-exact argv and environment.
 *
 * Node's child_process turns every argument and environment value into UTF-8, but a job's
 * params and FSPL_SET_ values are arbitrary bytes (fspl passes them through unchanged). When
 * any of them is not valid UTF-8, fspool spawns this helper instead and sends it the real
 * bytes on fd 3:
 *   argc and envc as decimal numbers, each followed by NUL; then argc strings and envc
 *   "NAME=value" strings, each NUL-terminated.
 * It closes fd 3 and execs, so the receiver keeps this process's pid, process group and
 * stdio, and inherits no extra fd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *next_str(char **p, char *end) {
  char *s = *p;
  char *nul = memchr(s, '\0', (size_t)(end - s));
  if (!nul) return NULL;
  *p = nul + 1;
  return s;
}

int main(void) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  if (!buf) return 127;
  for (;;) {
    if (len == cap) {
      cap *= 2;
      char *nb = realloc(buf, cap);
      if (!nb) return 127;
      buf = nb;
    }
    ssize_t n = read(3, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { perror("fspool-exec: read"); return 127; }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(3);
  char *p = buf, *end = buf + len;
  char *a = next_str(&p, end), *e = next_str(&p, end);
  if (!a || !e) { fputs("fspool-exec: bad request\n", stderr); return 127; }
  long argc = strtol(a, NULL, 10), envc = strtol(e, NULL, 10);
  if (argc < 1 || envc < 0) { fputs("fspool-exec: bad request\n", stderr); return 127; }
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  char **envp = calloc((size_t)envc + 1, sizeof *envp);
  if (!argv || !envp) return 127;
  for (long i = 0; i < argc; i++)
    if (!(argv[i] = next_str(&p, end))) { fputs("fspool-exec: bad request\n", stderr); return 127; }
  for (long i = 0; i < envc; i++)
    if (!(envp[i] = next_str(&p, end))) { fputs("fspool-exec: bad request\n", stderr); return 127; }
  execvpe(argv[0], argv, envp);
  fprintf(stderr, "fspool: cannot run %s: %s\n", argv[0], strerror(errno));
  return 127;
}
