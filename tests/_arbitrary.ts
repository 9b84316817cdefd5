/**
 * Seeded random inputs for the property tests: valid trees, run documents and results documents,
 * and mutations that break exactly one field of them, each with the field path the refusal must
 * name. A run prints its seed on failure; `DEFT_TEST_SEED` replays it.
 */

import { METHOD_NAMES, type MethodName } from "../kernels/method.ts";
import type { RunDocument } from "../workloads/format.ts";
import { Rng } from "../workloads/rng.ts";
import { type Tree, TREE_LIMITS } from "../workloads/tree.ts";
import type { ResultsDocument } from "../results/schema.ts";
import { failCase, makeRun } from "./_results_fixture.ts";

/** The seed of this test process: DEFT_TEST_SEED, or a fresh one. */
export function propertySeed(): number {
  const fixed = Deno.env.get("DEFT_TEST_SEED");
  return fixed ? Number(fixed) : (Math.random() * 2 ** 31) >>> 0;
}

/** Runs `fn` and adds the seed to any failure, so it can be replayed. */
export async function withSeed(seed: number, fn: (rng: Rng) => void | Promise<void>) {
  try {
    await fn(new Rng(seed));
  } catch (e) {
    (e as Error).message += ` (seed ${seed}; replay with DEFT_TEST_SEED=${seed})`;
    throw e;
  }
}

/** JSON has no Infinity: this value serializes to `1e400`, which parses back as Infinity. */
export const HUGE = "__HUGE_NUMBER__";

/** Serializes a value, writing {@linkcode HUGE} as the literal 1e400. */
export function toJson(value: unknown): string {
  return JSON.stringify(value).replaceAll(`"${HUGE}"`, "1e400");
}

/** One pick. */
export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(0, items.length - 1)]!;
}

/**
 * A valid tree: 1 to `maxNodes` nodes with distinct random ids in shuffled order (not DFS), each
 * parent an earlier-created node, random token counts (now and then the per-node limit), and
 * queries on random nodes, internal ones included.
 */
export function randomTree(rng: Rng, maxNodes = 30, { huge = true } = {}): Tree {
  const n = rng.int(1, maxNodes);
  const ids = new Set<number>();
  while (ids.size < n) ids.add(rng.int(0, n * 20));
  const idList = [...ids];
  const created = idList.map((id, i) => ({
    id,
    parent: i === 0 ? null : idList[rng.int(0, i - 1)]!,
    tokens: huge && rng.next() < 0.03 ? TREE_LIMITS.maxTokensPerNode / 4 : rng.int(1, 300),
  }));
  // Shuffle the node order: ids, order and DFS order are unrelated.
  for (let i = created.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [created[i], created[j]] = [created[j]!, created[i]!];
  }
  const queries = Array.from({ length: rng.int(1, 12) }, () => ({ node: pick(rng, idList) }));
  return { nodes: created, queries };
}

/** A valid run document: strictly increasing iterations and weights that sum to the run. */
export function randomRun(rng: Rng, { huge = true } = {}): RunDocument {
  const iterations = rng.int(1, 40);
  const k = rng.int(1, Math.min(4, iterations));
  const its = new Set<number>();
  while (its.size < k) its.add(rng.int(0, iterations - 1));
  const sorted = [...its].sort((a, b) => a - b);
  // Weights: integers >= 1 summing to `iterations`.
  const weights = sorted.map(() => 1);
  for (let left = iterations - k; left > 0; left--) weights[rng.int(0, k - 1)]!++;
  return {
    workload: {
      kind: pick(rng, ["few-shot", "file", "custom"]),
      name: `w${rng.int(0, 999)}`,
      params: { seed: rng.int(0, 9) },
    },
    iterations,
    snapshots: sorted.map((iteration, i) => ({
      iteration,
      weight: weights[i]!,
      tree: randomTree(rng, 12, { huge }),
    })),
  };
}

/** A broken document: its JSON text and what the refusal must say (every pattern must match). */
export interface Broken {
  text: string;
  /** Describes the mutation in a failure message. */
  what: string;
  expect: RegExp[];
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
/** A pattern matching a field path literally. */
export const field = (path: string) => new RegExp(esc(path));

type Json = Record<string, unknown>;
const clone = <T>(v: T): T => structuredClone(v);

/**
 * Breaks one field of a tree body (`tree`: plain JSON of nodes and queries) in place; returns
 * the path of the field (relative to the tree) and extra patterns the message must match.
 */
function breakTree(rng: Rng, tree: Json): { path: string; also: RegExp[]; what: string } {
  const nodes = tree.nodes as Json[];
  const queries = tree.queries as Json[];
  const i = rng.int(0, nodes.length - 1);
  const maxId = Math.max(...nodes.map((n) => n.id as number));
  const options: (() => { path: string; also?: RegExp[]; what: string })[] = [
    () => {
      const v = pick(rng, [-1, 1.5, "7", null, HUGE]);
      nodes[i]!.id = v;
      return { path: `nodes[${i}].id`, what: `id ${v}`, also: v === HUGE ? [/too large/] : [] };
    },
    () => {
      const v = pick(rng, [0, -5, 2.5, "9", null, HUGE, TREE_LIMITS.maxTokensPerNode + 1]);
      nodes[i]!.tokens = v;
      return {
        path: `nodes[${i}].tokens`,
        what: `tokens ${v}`,
        also: v === HUGE ? [/too large/] : [],
      };
    },
    () => {
      const child = nodes.findIndex((n) => n.parent !== null);
      if (child < 0) {
        nodes[i]!.parent = "x";
        return { path: `nodes[${i}].parent`, what: "parent x" };
      }
      const v = pick(rng, ["unknown", "text", "missing"]);
      if (v === "unknown") nodes[child]!.parent = maxId + 1000;
      else if (v === "text") nodes[child]!.parent = "0";
      else delete nodes[child]!.parent;
      return { path: `nodes[${child}].parent`, what: `parent ${v}` };
    },
    () => {
      if (nodes.length < 2) {
        nodes[i]!.extra = 1;
        return { path: `nodes[${i}]`, also: [/unknown field "extra"/], what: "extra field" };
      }
      const j = i === 0 ? 1 : 0;
      const [a, b] = [Math.min(i, j), Math.max(i, j)];
      nodes[b]!.id = nodes[a]!.id;
      return { path: `nodes[${b}].id`, also: [/duplicate/], what: "duplicate id" };
    },
    () => {
      nodes[i]!.extra = 1;
      return { path: `nodes[${i}]`, also: [/unknown field "extra"/], what: "extra field" };
    },
    () => {
      const q = rng.int(0, queries.length - 1);
      queries[q]!.node = maxId + 77;
      return { path: `queries[${q}].node`, what: "query on an unknown node" };
    },
    () => {
      const q = rng.int(0, queries.length - 1);
      queries[q] = pick(rng, [5, "n", null]) as unknown as Json;
      return { path: `queries[${q}]`, what: "query not an object" };
    },
    () => {
      tree.nodes = pick(rng, [{}, "nodes", 3]);
      return { path: "nodes", what: "nodes not an array" };
    },
  ];
  const r = pick(rng, options)();
  return { path: r.path, also: r.also ?? [], what: r.what };
}

/** A valid tree document with one field broken (or its header). */
export function brokenTree(rng: Rng, tree: Tree): Broken {
  const doc: Json = { format: "deft-bench/tree", version: 1, ...clone(tree) };
  if (rng.next() < 0.1) {
    const header = pick(rng, ["format", "version"] as const);
    doc[header] = header === "format" ? "deft-bench/trees" : 2;
    return { text: toJson(doc), what: `bad ${header}`, expect: [field(header)] };
  }
  const b = breakTree(rng, doc);
  return { text: toJson(doc), what: b.what, expect: [field(b.path), ...b.also] };
}

/** A valid run document with one field broken. */
export function brokenRun(rng: Rng, run: RunDocument): Broken {
  const doc: Json = { format: "deft-bench/run", version: 1, ...clone(run) };
  const snaps = doc.snapshots as Json[];
  const s = rng.int(0, snaps.length - 1);
  const kind = pick(rng, ["iterations", "iteration", "weight", "sum", "tree", "tree", "empty"]);
  switch (kind) {
    case "iterations": {
      doc.iterations = pick(rng, [0, -1, 2.5, "3", HUGE]);
      return { text: toJson(doc), what: `iterations ${doc.iterations}`, expect: [/iterations/] };
    }
    case "iteration": {
      if (s > 0 && rng.next() < 0.5) {
        snaps[s]!.iteration = snaps[s - 1]!.iteration;
        return {
          text: toJson(doc),
          what: "duplicate iteration",
          expect: [field(`snapshots[${s}].iteration`), /duplicate/],
        };
      }
      snaps[s]!.iteration = pick(rng, [-1, 1.5, doc.iterations as number, "0"]);
      return {
        text: toJson(doc),
        what: `iteration ${snaps[s]!.iteration}`,
        expect: [field(`snapshots[${s}].iteration`)],
      };
    }
    case "weight": {
      snaps[s]!.weight = pick(rng, [0, -1, "1", HUGE]);
      return {
        text: toJson(doc),
        what: `weight ${snaps[s]!.weight}`,
        expect: [field(`snapshots[${s}].weight`)],
      };
    }
    case "sum": {
      (snaps[s]!.weight as number) += 1;
      return { text: toJson(doc), what: "weights do not sum", expect: [/weights sum to/] };
    }
    case "empty": {
      doc.snapshots = [];
      return { text: toJson(doc), what: "no snapshots", expect: [field("snapshots")] };
    }
    default: {
      const b = breakTree(rng, snaps[s]!.tree as Json);
      // Tree fields are named inside their snapshot: snapshots[s].tree.nodes[i] or
      // snapshots[s].tree: nodes[i] (for rules checked on the whole tree).
      return {
        text: toJson(doc),
        what: `snapshot ${s}: ${b.what}`,
        expect: [
          new RegExp(`${esc(`snapshots[${s}].tree`)}(\\.|: )${esc(b.path)}`),
          ...b.also,
        ],
      };
    }
  }
}

/** A valid results document from the fixture with random workloads, methods and outcomes. */
export function randomResults(rng: Rng): ResultsDocument {
  const methods = METHOD_NAMES.filter(() => rng.next() < 0.6) as MethodName[];
  if (methods.length === 0) methods.push("sequence");
  const presets = ["few-shot-b20", "sorting", "speculative-t32", "grid-4000-50x200"];
  const workloads = presets.filter(() => rng.next() < 0.5).map((preset) => ({
    preset,
    scale: 0.02,
    snapshots: rng.int(1, 3),
  }));
  if (workloads.length === 0) workloads.push({ preset: "few-shot-b20", scale: 0.02, snapshots: 1 });
  const doc = makeRun({
    seed: rng.int(1, 1e6),
    methods,
    workloads,
    samples: rng.int(1, 40),
    noise: rng.next() * 0.2,
    fallback: rng.next() < 0.3,
    calibration: rng.next() < 0.7,
    commit: rng.next() < 0.2 ? null : undefined,
  });
  const keys = doc.workloads.flatMap((w) => w.snapshots.flatMap((s) => s.cases.map((c) => c.key)));
  if (rng.next() < 0.3) failCase(doc, pick(rng, keys), pick(rng, ["failed", "error"] as const));
  if (rng.next() < 0.2) {
    doc.partial = {
      reason: "interrupted by SIGINT",
      completedCases: keys.length,
      plannedCases: keys.length + rng.int(1, 9),
    };
  }
  return doc;
}

/** A valid results document with one field broken; `file` is the name messages must carry. */
export function brokenResults(rng: Rng, doc: ResultsDocument, file: string): Broken {
  const d = clone(doc) as unknown as Json;
  const ws = d.workloads as Json[];
  const wi = rng.int(0, ws.length - 1);
  const snaps = ws[wi]!.snapshots as Json[];
  const si = rng.int(0, snaps.length - 1);
  const cases = snaps[si]!.cases as Json[];
  const ci = rng.int(0, cases.length - 1);
  const c = cases[ci]!;
  const at = `workloads[${wi}].snapshots[${si}].cases[${ci}]`;
  const timed = cases.map((x, i) => ({ x, i })).filter(({ x }) => x.timing !== null);
  const out = (path: string, what: string, ...also: RegExp[]): Broken => ({
    text: toJson(d),
    what,
    expect: [field(`${file}: ${path}`), ...also],
  });
  const kind = pick(rng, [
    "sample",
    "median",
    "status",
    "key",
    "counts",
    "verification",
    "dtype",
    "startedAt",
    "calibration",
    "weight",
    "missing",
    "partial",
    "format",
    "truncated",
  ]);
  switch (kind) {
    case "sample":
    case "median": {
      if (timed.length === 0) break;
      const { x, i } = pick(rng, timed);
      const t = x.timing as Json;
      const tat = `workloads[${wi}].snapshots[${si}].cases[${i}].timing`;
      const v = pick(rng, [0, -3, HUGE, "1"]);
      if (kind === "sample") {
        const k = rng.int(0, (t.samplesNs as number[]).length - 1);
        (t.samplesNs as unknown[])[k] = v;
        return out(`${tat}.samplesNs[${k}]`, `sample ${v}`);
      }
      t.medianNs = v;
      return out(`${tat}.medianNs`, `median ${v}`);
    }
    case "status":
      c.status = "great";
      return out(`${at}.status`, "status");
    case "key": {
      const all = ws.flatMap((w, a) =>
        (w.snapshots as Json[]).flatMap((s, b) =>
          (s.cases as Json[]).map((x, k) => ({
            x,
            path: `workloads[${a}].snapshots[${b}].cases[${k}]`,
          }))
        )
      );
      if (all.length < 2) break;
      const j = rng.int(1, all.length - 1);
      all[j]!.x.key = all[rng.int(0, j - 1)]!.x.key;
      return out(`${all[j]!.path}.key`, "duplicate key", /duplicate/);
    }
    case "counts":
      ((c.counts as Json).real as Json).totalBytes = pick(rng, ["x", null, HUGE]);
      return out(`${at}.counts.real.totalBytes`, "counts");
    case "verification":
      (c.verification as Json).passed = "yes";
      return out(`${at}.verification.passed`, "verification");
    case "dtype":
      (d.settings as Json).dtype = "f8";
      return out("settings.dtype", "dtype");
    case "startedAt":
      (d.environment as Json).startedAt = "yesterday";
      return out("environment.startedAt", "startedAt");
    case "calibration":
      if (d.calibration === null) break;
      (d.calibration as Json).peakReadBytesPerS = pick(rng, [0, -1, null, HUGE]);
      return out("calibration.peakReadBytesPerS", "calibration");
    case "weight":
      snaps[si]!.weight = "heavy";
      return out(`workloads[${wi}].snapshots[${si}].weight`, "weight");
    case "missing":
      delete c.method;
      return out(`${at}.method`, "missing method");
    case "partial":
      d.partial = { reason: "interrupted", completedCases: -1, plannedCases: 3 };
      return out("partial.completedCases", "partial");
    case "format":
      d.format = "deft-bench/result";
      return out("format", "format");
    case "truncated": {
      const text = toJson(d);
      return {
        text: text.slice(0, rng.int(1, text.length - 1)),
        what: "truncated",
        expect: [field(`${file}: not valid JSON`)],
      };
    }
  }
  // The chosen mutation did not apply to this document: break the status instead.
  c.status = "great";
  return out(`${at}.status`, "status");
}
