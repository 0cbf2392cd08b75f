/*
 * Functions CPython's configure finds in the host headers (it compiles with
 * --sysroot=/usr, which also sees /usr/include) that wasi-libc does not have.
 * Each fails the way a kernel without the feature would.
 */
#include <errno.h>

int memfd_create(const char *name, unsigned int flags) {
  (void)name;
  (void)flags;
  errno = ENOSYS;
  return -1;
}

/*
 * Weak stand-ins for the symbols Snowflock's patch to the eval loop
 * (patches/0001-snowflock-fork-call.patch) refers to, for a link without the
 * snowflock module (the plain build): no object ever has this type, so the
 * eval loop never calls the function. snowflock.c's definitions replace them.
 * Plain C types: this file is compiled before CPython is configured.
 */
__attribute__((weak, aligned(8))) char _PySnowflock_ForkType[512];

__attribute__((weak)) void *_PySnowflock_ForkCall(void *callable, void *const *args, long nargs,
						  void *kwnames)
{
	(void)callable;
	(void)args;
	(void)nargs;
	(void)kwnames;
	return 0;
}

__attribute__((weak)) void *_PySnowflock_ForkNow(void *callable, void *const *args, long nargs)
{
	(void)callable;
	(void)args;
	(void)nargs;
	return 0;
}
