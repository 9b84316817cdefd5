/**
 * The registry of attention methods.
 *
 * @module
 */

import type { AttentionMethod, MethodName } from "../method.ts";

/** Every implemented method by name (filled as methods land). */
export const METHODS: ReadonlyMap<MethodName, AttentionMethod> = new Map<
  MethodName,
  AttentionMethod
>([]);

/** Looks a method up; throws `RangeError` listing the known names. */
export function getMethod(name: string): AttentionMethod {
  const m = METHODS.get(name as MethodName);
  if (!m) {
    throw new RangeError(
      `Unknown method ${JSON.stringify(name)}; known methods: ${[...METHODS.keys()].join(", ")}`,
    );
  }
  return m;
}
