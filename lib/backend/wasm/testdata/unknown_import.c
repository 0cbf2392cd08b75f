#include "sf.h"

__attribute__((import_module("env"), import_name("mystery"))) int mystery(void);
__attribute__((import_module("snowflock"), import_name("sf_bogus"))) int sf_bogus(void);

int main(void) { return mystery() + sf_bogus() + sf_clone_id(); }
