/* sf_checkpoint_parent, then clones created from the checkpoint later. */
#include <stdio.h>
#include "sf.h"

int main(void) {
  int value = 41;
  int checkpoint = sf_checkpoint_parent();
  if (checkpoint == 0) {
    printf("checkpoint clone %d: value=%d\n", sf_clone_id(), value);
    sf_exit(20 + sf_clone_id());
  }
  value = 99;
  int ticket = sf_request_ticket(2);
  printf("parent: checkpoint=%d created=%d\n", checkpoint, sf_create_clones(checkpoint, ticket));
  printf("parent: joined=%d value=%d\n", sf_join(ticket), value);
  return 0;
}
