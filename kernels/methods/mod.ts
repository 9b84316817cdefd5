/**
 * The list of attention methods: one record per method (`MethodRecord`: the method, the options
 * its planner reads and its kernel variants), in the order the command line, results and reports
 * show them. The method names, the registry, the default options, the command line's flags,
 * `tune`'s candidates and the conformance suite all come from this list: adding a method is its
 * module plus one line here.
 *
 * @module
 */

import type { MethodOptions, MethodRecord } from "../method.ts";
import { type MethodOption, TARGET_WORKGROUPS } from "../options.ts";
import { cascade } from "./cascade.ts";
import { BLOCK_SIZE, deftFlatten } from "./deft_flatten.ts";
import { deftNode } from "./deft_node.ts";
import { CHUNK_SIZE, deftNodeChunk } from "./deft_node_chunk.ts";
import { radix } from "./radix.ts";
import { sequence } from "./sequence.ts";
import { treeMask } from "./tree_mask.ts";

/** Every method, in the order of the command line and the results. */
export const METHOD_LIST = [
  sequence,
  radix,
  treeMask,
  deftNode,
  deftNodeChunk,
  deftFlatten,
  cascade,
] as const;

/** A method name. */
export type MethodName = (typeof METHOD_LIST)[number]["name"];

/** Names of the methods, as used on the command line and in results. */
export const METHOD_NAMES: readonly MethodName[] = METHOD_LIST.map((m) => m.name);

/** Every method by name (in list order). */
export const METHODS: ReadonlyMap<MethodName, MethodRecord> = new Map<MethodName, MethodRecord>(
  METHOD_LIST.map((m) => [m.name, m]),
);

/** Every option some method reads, once each, in list order. */
export const METHOD_OPTIONS: readonly MethodOption[] = [
  ...new Map(METHOD_LIST.flatMap((m) => m.options).map((o) => [o.key, o])).values(),
];

/**
 * Defaults of {@linkcode MethodOptions}: the built-in options in the order results record them,
 * then any other method's options; the kernel family `auto`.
 */
export const DEFAULT_METHOD_OPTIONS: Readonly<MethodOptions> = {
  blockSize: BLOCK_SIZE.default,
  chunkSize: CHUNK_SIZE.default,
  targetWorkgroups: TARGET_WORKGROUPS.default,
  kernel: "auto",
  ...Object.fromEntries(METHOD_OPTIONS.map((o) => [o.key, o.default])),
};

/** Looks a method up; throws `RangeError` listing the known names. */
export function getMethod(name: string): MethodRecord {
  const m = METHOD_LIST.find((r) => r.name === name);
  if (!m) {
    throw new RangeError(
      `Unknown method ${JSON.stringify(name)}; known methods: ${METHOD_NAMES.join(", ")}`,
    );
  }
  return m;
}
