/**
 * The registry of attention methods.
 *
 * @module
 */

import type { AttentionMethod, MethodName } from "../method.ts";
import { cascade } from "./cascade.ts";
import { deftFlatten } from "./deft_flatten.ts";
import { deftNode } from "./deft_node.ts";
import { deftNodeChunk } from "./deft_node_chunk.ts";
import { radix } from "./radix.ts";
import { sequence } from "./sequence.ts";
import { treeMask } from "./tree_mask.ts";

/** Every implemented method by name (filled as methods land). */
export const METHODS: ReadonlyMap<MethodName, AttentionMethod> = new Map<
  MethodName,
  AttentionMethod
>([
  ["sequence", sequence as AttentionMethod],
  ["radix", radix as AttentionMethod],
  ["deft-node", deftNode as AttentionMethod],
  ["deft-node-chunk", deftNodeChunk as AttentionMethod],
  ["deft-flatten", deftFlatten as AttentionMethod],
  ["cascade", cascade as AttentionMethod],
  ["tree-mask", treeMask as AttentionMethod],
]);

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
