// The smallest and largest of many numbers. Math.min(...xs) / Math.max(...xs)
// pass every element as a call argument and overflow the stack past a few
// hundred thousand elements (a data set's labels, a long spectrum); a loop
// does not.

/** { min, max } of the values (NaN skipped); ±Infinity reversed when there are none. */
export function extent(values: Iterable<number>): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}
