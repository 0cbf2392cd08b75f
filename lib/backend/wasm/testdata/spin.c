/* Runs until killed: spins, or blocks in sf_join with argv[1] "join". */
#include <stdio.h>
#include <string.h>
#include "sf.h"

int main(int argc, char **argv) {
  printf("spinning\n");
  if (argc > 1 && strcmp(argv[1], "join") == 0) return sf_join(1);
  volatile unsigned long n = 0;
  for (;;) n++;
}
