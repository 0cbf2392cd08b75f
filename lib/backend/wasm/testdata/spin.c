/*
 * Runs until killed: spins, or with argv[1] "join" blocks in sf_join, or with
 * "sleep" sleeps in poll_oneoff. The line is flushed before, so a test knows
 * the guest got there.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "sf.h"

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "spin";
  printf("%s\n", mode);
  fflush(stdout);
  if (strcmp(mode, "join") == 0) return sf_join(1);
  if (strcmp(mode, "sleep") == 0) return sleep(3600);
  volatile unsigned long n = 0;
  for (;;) n++;
}
