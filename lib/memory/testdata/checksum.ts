/** Test helper: the page checksum both the touch worker and the tests compute. */

/** FNV-1a over the 32-bit words of one page. */
export function pageChecksum(words: Int32Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  return h >>> 0;
}
