/**
 * How asyncify instruments Snowflock's CPython. With
 * `asyncify-ignore-indirect`, asyncify instruments only the functions that
 * reach a forking import (`snowflock.sf_clone`, `sf_checkpoint_parent`) by
 * direct calls. Snowflock's patch to the eval loop
 * (native/python/patches/0001-snowflock-fork-call.patch) suspends the eval
 * loop at a fork call, like a generator at a yield, and makes the call from
 * `_PyEval_Vector` with no eval loop on the C stack. So the instrumented set
 * is the path `_start → main → Py_RunMain → run_mod → PyEval_EvalCode →
 * _PyEval_Vector → _PySnowflock_ForkNow → sf_clone` plus the direct callers of
 * those functions (e.g. `_PyFunction_Vectorcall`, a C caller of a Python
 * function); the eval loop itself is not instrumented. No add-list is needed:
 * everything is found from the call graph.
 *
 * After asyncify, binaryen optimizes only the functions below again (the
 * rest keeps clang's code): the instrumented ones that matter for speed.
 *
 * @module
 */

/** Functions binaryen optimizes after asyncify (names from the wasm name section). */
export const PYTHON_ASYNCIFY_OPTIMIZE_LIST: readonly string[] = [
  "_PyEval_Vector",
  "_PyFunction_Vectorcall",
  "PyEval_EvalCode",
  "_PySnowflock_ForkNow",
];
