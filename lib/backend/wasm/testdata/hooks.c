/* Every snowflock call whose hook fails must return a negative code. */
#include <stdio.h>
#include "sf.h"

int main(void) {
  printf("request_ticket: %d\n", sf_request_ticket(2));
  printf("clone: %d\n", sf_clone(7));
  printf("join: %d\n", sf_join(7));
  printf("checkpoint: %d\n", sf_checkpoint_parent());
  printf("hint outside memory: %d\n", sf_hint_overwrite((void *)0x7ffffff0, 0x7fffffff));
  printf("still running\n");
  return 0;
}
