/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Imports a function no Snowflock host provides: loading it must fail, naming it. */
__attribute__((import_module("env"), import_name("mystery_call"))) int mystery_call(int);

int main(void) { return mystery_call(1); }
