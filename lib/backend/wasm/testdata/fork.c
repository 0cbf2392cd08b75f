/*
 * Fork semantics. argv[1]: heap MiB to fill before the fork; argv[2] "nested":
 * clone 1 forks a grandchild.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sf.h"

int counter = 100;

int main(int argc, char **argv) {
  int mib = argc > 1 ? atoi(argv[1]) : 1;
  int nested = argc > 2 && strcmp(argv[2], "nested") == 0;
  int count = mib * 256 * 1024;
  int *heap = malloc(count * sizeof(int));
  for (int i = 0; i < count; i++) heap[i] = i * 7;
  int local = 1234;
  counter = 200;

  int ticket = sf_request_ticket(3);
  int size = sf_ticket_size(ticket);
  int id = sf_clone(ticket);
  if (id < 0) {
    printf("sf_clone failed: %d\n", id);
    return 1;
  }
  if (id > 0) {
    int ok = 1;
    for (int i = 0; i < count; i++) ok &= heap[i] == i * 7;
    printf("clone %d: local=%d counter=%d heap=%d clone_id=%d\n", id, local, counter, ok,
           sf_clone_id());
    heap[0] = -id;
    counter = 300 + id;
    if (nested && id == 1) {
      int inner = sf_request_ticket(1);
      int child = sf_clone(inner);
      if (child > 0) {
        printf("grandchild %d: counter=%d heap0=%d clone_id=%d\n", child, counter, heap[0],
               sf_clone_id());
        sf_exit(50 + child);
      }
      printf("clone 1: inner clone %d joined %d\n", child, sf_join(inner));
    }
    sf_exit(10 + id);
  }
  printf("parent: size=%d local=%d counter=%d clone_id=%d\n", size, local, counter,
         sf_clone_id());
  int joined = sf_join(ticket);
  printf("parent: joined=%d heap0=%d counter=%d\n", joined, heap[0], counter);
  return 0;
}
