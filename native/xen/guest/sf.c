/* `sf`: the Snowflock guest command for Linux PV guests.
 *   sf ticket N     prints "<ticket>" (granted count on stderr); exit 0
 *   sf clone T      prints 0 in the parent, 1..m in the clones
 *   sf join T | sf kill T | sf exit CODE
 *   sf whoami       prints "<clone-id> <domid>"
 *   sf raw OP [ARG] sends one raw request and prints "<rc> <value>" (tests)
 * Errors: message on stderr, exit status 1 (the negative code is printed). */
#include "sf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
  fprintf(stderr, "usage: sf ticket N | clone T | join T | kill T | exit CODE | whoami | raw OP [ARG]\n");
  return 2;
}

static int fail(const char *what, int rc) {
  fprintf(stderr, "sf %s: error %d\n", what, rc);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *cmd = argv[1], *arg = argc > 2 ? argv[2] : NULL;
  if (!strcmp(cmd, "ticket") && arg) {
    char t[128];
    int m = sf_request_ticket(atoi(arg), t, sizeof t);
    if (m < 0) return fail(cmd, m);
    printf("%s\n", t);
    fprintf(stderr, "sf: granted %d\n", m);
    return 0;
  }
  if (!strcmp(cmd, "clone") && arg) {
    int id = sf_clone(arg);
    if (id < 0) return fail(cmd, id);
    printf("%d\n", id);
    return 0;
  }
  if (!strcmp(cmd, "join") && arg) { int rc = sf_join(arg); return rc < 0 ? fail(cmd, rc) : 0; }
  if (!strcmp(cmd, "kill") && arg) { int rc = sf_kill(arg); return rc < 0 ? fail(cmd, rc) : 0; }
  if (!strcmp(cmd, "exit")) { int rc = sf_exit(arg ? atoi(arg) : 0); return rc < 0 ? fail(cmd, rc) : 0; }
  if (!strcmp(cmd, "whoami")) { printf("%d %d\n", sf_clone_id(), sf_domid()); return 0; }
  if (!strcmp(cmd, "raw") && arg) {
    char v[512];
    int rc = sf_call(arg, argc > 3 ? argv[3] : "", v, sizeof v, 30000);
    printf("%d %s\n", rc, v);
    return rc < 0 ? 1 : 0;
  }
  return usage();
}
