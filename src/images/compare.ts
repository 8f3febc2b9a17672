/** String order as Go compares strings. */

/** Go's byte-wise string order (JavaScript compares UTF-16 units, which differs above U+FFFF). */
export function goStringCompare(a: string, b: string): number {
  if (a === b) return 0;
  if (!/[\ud800-\uffff]/.test(a) && !/[\ud800-\uffff]/.test(b)) return a < b ? -1 : 1;
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
