/**
 * Interrupt checks: how the host stops a guest that is computing.
 *
 * Deno's `Worker.terminate()` interrupts neither Wasm code nor `Atomics.wait`:
 * a killed VM would keep its thread, and a spinning one its core, until the
 * process ends. So the preparer puts a check at the head of every loop and
 * the entry of every function on a cycle of direct calls: a load of the word
 * at {@link INTERRUPT_FLAG} in a second, one-page shared memory the host owns
 * (`snowflock.interrupt`), then `unreachable` if it is not zero. Without a
 * loop or recursion, code runs for a time bounded by its size, so the guest
 * traps soon after `WasmVm.kill()` sets the word; by then the host has
 * reported the VM killed, so the trap is nobody's news.
 *
 * Not checked: recursion only through function pointers with no loop on its
 * way. It ends by stack overflow, or is finite; checking every function entry
 * instead cost CPython a further 10–20 % (each check reads a second memory,
 * which V8 makes dearer than memory 0).
 *
 * The load is atomic: nothing in a loop writes the word, so an optimizer
 * (binaryen's after asyncify, or V8's) may keep a plain load's first value for
 * the whole loop. On x86-64 the load itself is the same `mov` either way.
 *
 * The checks go in before asyncify, which then treats them as ordinary code
 * (they call nothing, so they never unwind).
 *
 * @module
 */
import binaryen from "binaryen";
import { GuestError } from "./errors.ts";
import { INTERRUPT_FLAG } from "./guest_abi.ts";

// binaryen.js has these at run time but its typings lack them.
interface BodyAccess {
  getBody(ref: number): binaryen.ExpressionRef;
  setBody(ref: number, body: binaryen.ExpressionRef): void;
}
const { Function: functionBodies, Loop: loopBodies } = binaryen as unknown as {
  Function: BodyAccess;
  Loop: BodyAccess;
};

/** Where each expression kind keeps its operands, as named by `getExpressionInfo`. */
const OPERANDS: ReadonlyMap<number, readonly string[]> = new Map([
  [binaryen.BlockId, ["children"]],
  [binaryen.IfId, ["condition", "ifTrue", "ifFalse"]],
  [binaryen.LoopId, ["body"]],
  [binaryen.BreakId, ["condition", "value"]],
  [binaryen.SwitchId, ["condition", "value"]],
  [binaryen.CallId, ["operands"]],
  [binaryen.CallIndirectId, ["target", "operands"]],
  [binaryen.LocalGetId, []],
  [binaryen.LocalSetId, ["value"]],
  [binaryen.GlobalGetId, []],
  [binaryen.GlobalSetId, ["value"]],
  [binaryen.TableGetId, ["index"]],
  [binaryen.TableSetId, ["index", "value"]],
  [binaryen.TableSizeId, []],
  [binaryen.TableGrowId, ["value", "delta"]],
  [binaryen.LoadId, ["ptr"]],
  [binaryen.StoreId, ["ptr", "value"]],
  [binaryen.ConstId, []],
  [binaryen.UnaryId, ["value"]],
  [binaryen.BinaryId, ["left", "right"]],
  [binaryen.SelectId, ["ifTrue", "ifFalse", "condition"]],
  [binaryen.DropId, ["value"]],
  [binaryen.ReturnId, ["value"]],
  [binaryen.NopId, []],
  [binaryen.UnreachableId, []],
  [binaryen.PopId, []],
  [binaryen.MemorySizeId, []],
  [binaryen.MemoryGrowId, ["delta"]],
  [binaryen.AtomicRMWId, ["ptr", "value"]],
  [binaryen.AtomicCmpxchgId, ["ptr", "expected", "replacement"]],
  [binaryen.AtomicWaitId, ["ptr", "expected", "timeout"]],
  [binaryen.AtomicNotifyId, ["ptr", "notifyCount"]],
  [binaryen.AtomicFenceId, []],
  [binaryen.SIMDExtractId, ["vec"]],
  [binaryen.SIMDReplaceId, ["vec", "value"]],
  [binaryen.SIMDShuffleId, ["left", "right"]],
  [binaryen.SIMDTernaryId, ["a", "b", "c"]],
  [binaryen.SIMDShiftId, ["vec", "shift"]],
  [binaryen.SIMDLoadId, ["ptr"]],
  [binaryen.SIMDLoadStoreLaneId, ["ptr", "vec"]],
  [binaryen.MemoryInitId, ["dest", "offset", "size"]],
  [binaryen.DataDropId, []],
  [binaryen.MemoryCopyId, ["dest", "source", "size"]],
  [binaryen.MemoryFillId, ["dest", "value", "size"]],
  [binaryen.RefNullId, []],
  [binaryen.RefIsNullId, ["value"]],
  [binaryen.RefAsId, ["value"]],
  [binaryen.RefFuncId, []],
  [binaryen.RefEqId, ["left", "right"]],
  [binaryen.TupleMakeId, ["operands"]],
  [binaryen.TupleExtractId, ["tuple"]],
]);

/**
 * Puts an interrupt check at the head of every loop of `module` and the entry
 * of every recursive function, reading memory `memory` (see the module
 * documentation).
 *
 * @throws {GuestError} if a function holds an instruction whose operands this
 * walk does not know: skipping it could miss a loop the host cannot stop.
 */
export function addInterruptChecks(module: binaryen.Module, memory: string): void {
  const check = () =>
    module.if(
      module.i32.atomic.load(0, module.i32.const(INTERRUPT_FLAG), memory),
      module.unreachable(),
    );
  const before = (body: binaryen.ExpressionRef) =>
    module.block(null, [check(), body], binaryen.getExpressionType(body));
  const callees = new Map<string, Set<string>>();
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const fn = module.getFunctionByIndex(i);
    const info = binaryen.getFunctionInfo(fn);
    if (info.module) continue;
    const { loops, calls } = walk(functionBodies.getBody(fn));
    for (const loop of loops) loopBodies.setBody(loop, before(loopBodies.getBody(loop)));
    callees.set(info.name, calls);
  }
  for (const name of recursive(callees)) {
    const fn = module.getFunction(name);
    functionBodies.setBody(fn, before(functionBodies.getBody(fn)));
  }
}

/** The loops of a function body and the functions it calls directly. */
function walk(body: binaryen.ExpressionRef): {
  loops: binaryen.ExpressionRef[];
  calls: Set<string>;
} {
  const loops: binaryen.ExpressionRef[] = [];
  const calls = new Set<string>();
  const pending = [body];
  for (let expr = pending.pop(); expr !== undefined; expr = pending.pop()) {
    const id = binaryen.getExpressionId(expr);
    const operands = OPERANDS.get(id);
    if (!operands) {
      throw new GuestError(
        `Cannot load guest: cannot place interrupt checks past expression kind ${id}`,
      );
    }
    if (id === binaryen.LoopId) loops.push(expr);
    if (operands.length === 0) continue;
    const info = binaryen.getExpressionInfo(expr) as unknown as Record<string, unknown>;
    if (id === binaryen.CallId) calls.add(info.target as string);
    for (const name of operands) {
      const operand = info[name] as binaryen.ExpressionRef | binaryen.ExpressionRef[];
      if (Array.isArray(operand)) pending.push(...operand);
      else if (operand) pending.push(operand);
    }
  }
  return { loops, calls };
}

/**
 * The functions on a cycle of direct calls (Tarjan's strongly connected
 * components, iteratively: a guest's call chains outgrow the JS stack).
 */
function recursive(callees: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[] = [];
  for (const root of callees.keys()) {
    if (index.has(root)) continue;
    const frames: { name: string; next: Iterator<string> }[] = [];
    const enter = (name: string) => {
      index.set(name, index.size);
      low.set(name, index.get(name)!);
      stack.push(name);
      onStack.add(name);
      frames.push({ name, next: (callees.get(name) ?? new Set()).values() });
    };
    enter(root);
    while (frames.length > 0) {
      const frame = frames[frames.length - 1];
      const step = frame.next.next();
      if (!step.done) {
        const callee = step.value;
        // Imports are not in the map: they never call back into the guest.
        if (!callees.has(callee)) continue;
        if (!index.has(callee)) enter(callee);
        else if (onStack.has(callee)) {
          low.set(frame.name, Math.min(low.get(frame.name)!, index.get(callee)!));
        }
        continue;
      }
      frames.pop();
      const parent = frames[frames.length - 1];
      if (parent) low.set(parent.name, Math.min(low.get(parent.name)!, low.get(frame.name)!));
      if (low.get(frame.name) !== index.get(frame.name)) continue;
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== frame.name);
      if (component.length > 1 || callees.get(frame.name)!.has(frame.name)) {
        found.push(...component);
      }
    }
  }
  return found;
}
