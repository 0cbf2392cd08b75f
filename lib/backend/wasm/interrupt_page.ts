/**
 * The interrupt memory's import limits (interrupt.ts), set in binaryen's
 * output: binaryen.js cannot give an imported memory limits, so it declares
 * 0 to 65536 pages. From a minimum of 0, V8 cannot tell that the interrupt
 * word is in bounds and checks every load of it (a recursive fib ran 10 %
 * slower).
 *
 * @module
 */
import { INTERRUPT_IMPORT } from "./guest_abi.ts";
import { leb, readLeb } from "./module_sections.ts";

/** `bytes` (binaryen's output) with the interrupt memory imported as exactly one shared page. */
export function declareInterruptPage(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  for (let at = 8; at < bytes.length;) {
    const start = at;
    const size = readLeb(bytes, at + 1);
    at = size.next + size.value;
    if (bytes[start] !== IMPORT_SECTION) continue;
    const section = withOnePage(bytes.subarray(size.next, at));
    const header = [IMPORT_SECTION, ...leb(section.length)];
    const out = new Uint8Array(start + header.length + section.length + bytes.length - at);
    out.set(bytes.subarray(0, start));
    out.set(header, start);
    out.set(section, start + header.length);
    out.set(bytes.subarray(at), start + header.length + section.length);
    return out;
  }
  throw new Error("Cannot declare the interrupt page: the module has no import section");
}

const IMPORT_SECTION = 2;
// Import kinds (binary format, import section).
const FUNCTION = 0;
const TABLE = 1;
const MEMORY = 2;
const GLOBAL = 3;
const TAG = 4;
// Limits flags: 1 = has a maximum, 2 = shared.
const HAS_MAX = 1;
const SHARED_ONE_PAGE = [HAS_MAX | 2, 1, 1];

function withOnePage(section: Uint8Array): Uint8Array {
  const decoder = new TextDecoder();
  const name = (at: number) => {
    const length = readLeb(section, at);
    const end = length.next + length.value;
    return { text: decoder.decode(section.subarray(length.next, end)), next: end };
  };
  const count = readLeb(section, 0);
  let at = count.next;
  for (let i = 0; i < count.value; i++) {
    const module = name(at);
    const field = name(module.next);
    const kind = section[field.next];
    at = field.next + 1;
    switch (kind) {
      case FUNCTION:
        at = readLeb(section, at).next;
        break;
      case TABLE:
        at = skipLimits(section, at + 1); // after a one-byte reference type
        break;
      case MEMORY: {
        const end = skipLimits(section, at);
        if (module.text === INTERRUPT_IMPORT.module && field.text === INTERRUPT_IMPORT.name) {
          const out = new Uint8Array(at + SHARED_ONE_PAGE.length + section.length - end);
          out.set(section.subarray(0, at));
          out.set(SHARED_ONE_PAGE, at);
          out.set(section.subarray(end), at + SHARED_ONE_PAGE.length);
          return out;
        }
        at = end;
        break;
      }
      case GLOBAL:
        at += 2; // value type, mutability
        break;
      case TAG:
        at = readLeb(section, at + 1).next; // after the attribute
        break;
      default:
        throw new Error(`Cannot declare the interrupt page: import kind ${kind}`);
    }
  }
  throw new Error("Cannot declare the interrupt page: the module does not import it");
}

function skipLimits(section: Uint8Array, at: number): number {
  const min = readLeb(section, at + 1);
  return section[at] & HAS_MAX ? readLeb(section, min.next).next : min.next;
}
