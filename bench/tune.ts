/**
 * Tuning: the method options worth choosing per adapter and runtime (DeFT-Flatten's block size,
 * the kernel family, ...) are measured, not constants. {@linkcode tune} runs every candidate of a
 * method on a few trees with bench's own case runner (plan, prepare, check against the float64
 * reference, then time interleaved), scores each candidate by the geometric mean of its median
 * over the best median per tree, and returns the winner with every candidate's numbers. The
 * winners are stored per (adapter, runtime) in `out/tuning/<adapter>-<runtime>.json`, one entry
 * per (dtype, method); `bench` applies them by default.
 *
 * The candidates come from data ({@linkcode TUNABLES}): each tunable names a method option, the
 * methods it matters for, its values on a device and, optionally, the candidates it applies to
 * (the matrix tile only with the `mma` family). They are made from the method records: every
 * option with `tune` values, the kernel family, and every kernel variant's parameter group with
 * `tune` groups; a new method's tunables need no edit here.
 *
 * @module
 */

import type { Gpu, RuntimeName } from "../kernels/gpu.ts";
import {
  type AttentionMethod,
  DEFAULT_METHOD_OPTIONS,
  KERNEL_CHOICES,
  type KernelCaps,
  kernelCaps,
  METHOD_NAMES,
  type MethodName,
  type MethodOptions,
} from "../kernels/method.ts";
import { METHOD_LIST, METHOD_OPTIONS } from "../kernels/methods/mod.ts";
import { badParamGroup, type KernelVariant, type VariantParams } from "../kernels/options.ts";
import { Problem } from "../kernels/problem.ts";
import { referenceOf, sampleRows } from "../kernels/verify.ts";
import { writeFileAtomic } from "../results/files.ts";
import type { CaseResult, ClockReferenceCalibration, OptionValue } from "../results/schema.ts";
import { median } from "../results/stats.ts";
import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import { IndexedTree, type Tree, treeFacts } from "../workloads/tree.ts";
import { adapterKey } from "./calibrate.ts";
import { createFlushPass } from "./measure.ts";
import { createClockGuard, LOW_CLOCK_FRACTION } from "./clock.ts";
import { type CaseSpec, type ClockRecord, runCases, type TimingConfig } from "./run.ts";
import type { Timer } from "./timer.ts";

/** Format tag of a tuning file. */
export const TUNING_FORMAT = "deft-bench/tuning";
/** Version of the tuning file format. */
export const TUNING_VERSION = 1;

/** Option values of a candidate (a subset of {@linkcode MethodOptions}). */
export type OptionValues = Record<string, OptionValue>;

/** A method option worth tuning: the methods it matters for and its values on a device. */
export interface Tunable {
  option: keyof MethodOptions;
  /** Methods whose plans read the option (`all`: every method may). */
  methods: readonly MethodName[] | "all";
  /** The values to try on a device with `caps` for `dtype`; the default value first. */
  values(caps: KernelCaps, dtype: Dtype): readonly OptionValue[];
  /** Whether the option matters for a candidate with the options chosen so far (default: yes). */
  when?(candidate: OptionValues): boolean;
}

/** The value of each tunable option when nothing is chosen: the tie-break prefers these. */
export const TUNING_DEFAULTS: Readonly<OptionValues> = Object.fromEntries([
  ...METHOD_OPTIONS.filter((o) => o.tune).map((o) => [o.key, o.default]),
  ...tunedParams().map(({ params }) => [
    params.key,
    Object.fromEntries(params.params.map((p) => [p.name, p.default])),
  ]),
]);

/** Deep equality of option values. */
export function sameValue(a: OptionValue | undefined, b: OptionValue | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The kernel families a device offers for `dtype`: `fma` always, `mma` (subgroup matrices) with
 * f16 storage on a device with an f16 x f16 -> f32 matrix configuration.
 */
export function kernelFamilies(caps: KernelCaps | null, dtype: Dtype): ("fma" | "mma")[] {
  return caps?.matrix && dtype === "f16" ? ["fma", "mma"] : ["fma"];
}

/** The kernel variants whose parameter group has `tune` groups, once per group, with their users. */
function tunedParams(): { variant: KernelVariant; params: VariantParams; methods: MethodName[] }[] {
  const out = new Map<
    string,
    { variant: KernelVariant; params: VariantParams; methods: MethodName[] }
  >();
  for (const m of METHOD_LIST) {
    for (const v of m.variants) {
      if (!v.params?.tune) continue;
      const e = out.get(v.params.key) ?? { variant: v, params: v.params, methods: [] };
      e.methods.push(m.name);
      out.set(v.params.key, e);
    }
  }
  return [...out.values()];
}

/**
 * Everything `tune` tries, by default, from the method records: each option with `tune` values
 * (for the methods that read it), the kernel family (every method), and each kernel variant's
 * parameter groups (for the methods with that variant, when its family is tried).
 */
export const TUNABLES: readonly Tunable[] = [
  ...METHOD_OPTIONS.filter((o) => o.tune).map((o): Tunable => ({
    option: o.key,
    methods: METHOD_LIST.filter((m) => m.options.includes(o)).map((m) => m.name),
    values: () => o.tune!,
  })),
  { option: "kernel", methods: "all", values: (caps, dtype) => kernelFamilies(caps, dtype) },
  ...tunedParams().map(({ variant, params, methods }): Tunable => ({
    option: params.key,
    methods,
    values: () => params.tune!,
    when: (c) => c.kernel === variant.family,
  })),
];

/**
 * Every combination of the tunables that matter for `method` (the cartesian product of their
 * values, in the order listed), with the options in `fixed` pinned instead of tried.
 */
export function tuningCandidates(
  method: MethodName,
  caps: KernelCaps,
  dtype: Dtype,
  { tunables = TUNABLES, fixed = {} }: {
    tunables?: readonly Tunable[];
    fixed?: Partial<MethodOptions>;
  } = {},
): OptionValues[] {
  let out: OptionValues[] = [{}];
  for (const t of tunables) {
    if (t.methods !== "all" && !t.methods.includes(method)) continue;
    if (fixed[t.option] !== undefined) continue;
    const values = t.values(caps, dtype).filter((v, i, all) =>
      all.findIndex((w) => sameValue(v, w)) === i
    );
    if (values.length === 0) continue;
    out = out.flatMap((c) =>
      t.when && !t.when({ ...fixed, ...c } as OptionValues)
        ? [c]
        : values.map((v) => ({ ...c, [t.option]: v }))
    );
  }
  return out;
}

/** `blockSize=256 kernel=mma mma.rows=64 mma.keys=32` (or `defaults` for no options). */
export function describeOptions(o: OptionValues): string {
  const parts = Object.entries(o).flatMap(([k, v]) =>
    typeof v === "object" ? Object.entries(v).map(([g, x]) => `${k}.${g}=${x}`) : [`${k}=${v}`]
  );
  return parts.length ? parts.join(" ") : "defaults";
}

/** A tree to tune on. */
export interface TuneTree {
  name: string;
  tree: Tree;
}

/** One candidate's outcome. */
export interface CandidateResult {
  options: OptionValues;
  /** Kernel variant the plan reported on the first tree. */
  kernel: string;
  /** `same`: identical kernels, constants and plan as an earlier candidate on every tree. */
  status: "ok" | "failed" | "error" | "same";
  message: string | null;
  /** Median latency per tree (ns; null where not timed). */
  mediansNs: (number | null)[];
  /** Geometric mean over trees of median / best median; null unless timed on every tree. */
  score: number | null;
  /** Index of the earlier candidate it is the same as, or null. */
  sameAs: number | null;
  /**
   * Per tree, the speed the GPU ran at while the candidate was timed, as a fraction of its working
   * speed (the clock guard's reference kernel beside the samples; see bench/clock.ts); null where
   * not timed or without a clock guard. Absent in files written before the guard.
   */
  clockFractions?: (number | null)[];
}

/** The tuning of one method for one dtype on one (adapter, runtime). */
export interface TuningEntry {
  method: MethodName;
  dtype: Dtype;
  /** Model shape it was measured with. */
  shape: string;
  /** The winner's options that make a difference (options no candidate changed are left out). */
  choice: OptionValues;
  /** Index of the winner in `candidates`. */
  winner: number;
  tunedAt: string;
  trees: { name: string; nodes: number; treeTokens: number; queries: number }[];
  candidates: CandidateResult[];
  /**
   * Variant parameters of the method's delegates that its candidates ran with, as `bench` runs
   * them (`sequence`'s split count for deft-flatten's Flash-Decoding parts); absent when none.
   */
  delegated?: OptionValues;
  /**
   * `candidate on tree` for every timing taken below {@linkcode LOW_CLOCK_FRACTION} of the working
   * speed (its latency, and the choice it took part in, are then in doubt; tune again). Empty when
   * every timing ran at speed; absent without a clock guard.
   */
  lowClock?: string[];
  /**
   * True when every sample followed a cache flush (`tune --cold`, as `bench --cold` measures),
   * false with warm caches; absent in files written before it was recorded.
   */
  cold?: boolean;
}

/** A tuning file: the entries of one adapter and runtime. */
export interface TuningDocument {
  format: typeof TUNING_FORMAT;
  version: typeof TUNING_VERSION;
  adapterKey: string;
  /** The adapter's description, for people. */
  adapter: string;
  runtime: { name: RuntimeName; version: string };
  entries: TuningEntry[];
}

/** Default tie margin of {@linkcode tune}: 1 % of the best score. */
export const DEFAULT_TIE_MARGIN = 0.01;

/** Options of {@linkcode tune}. */
export interface TuneOptions {
  methods: readonly AttentionMethod[];
  trees: readonly TuneTree[];
  shape: ModelShape;
  dtype: Dtype;
  seed: number;
  timing: TimingConfig;
  verifyRows: number;
  /** Options not tuned but pinned (explicit command-line options); defaults for the rest. */
  fixed?: Partial<MethodOptions>;
  tunables?: readonly Tunable[];
  flushBytes?: number;
  /**
   * Candidates whose score is within this fraction of the best count as tied, and the one with
   * the most default options wins among them (default {@linkcode DEFAULT_TIE_MARGIN}).
   */
  tieMargin?: number;
  /** Progress lines. */
  onStep?: (message: string) => void;
  now?: () => number;
  /**
   * Keep the GPU at its working clock while timing, as `bench` does (`bench/clock.ts`: a spin-up
   * before every tree, a reference kernel beside the samples), and record each timing's clock.
   * Default false (tests and CPUs); the `tune` command turns it on for hardware adapters.
   */
  clockGuard?: boolean;
  /** The calibrated clock reference (the working speed), when the adapter has one stored. */
  clockReference?: ClockReferenceCalibration | null;
  /**
   * The choices already stored for this adapter, runtime and dtype, by method. A method runs its
   * candidates with its delegates' variant parameters from them, as `bench` does (see
   * {@linkcode delegatedOptions}); a delegate tuned in the same call counts with its new choice
   * (delegates are tuned first).
   */
  stored?: Partial<Record<MethodName, OptionValues>>;
}

/** The methods a method runs parts of a tree with (`MethodRecord.delegatesTo`), as known names. */
export function delegatesOf(name: MethodName): MethodName[] {
  const record = METHOD_LIST.find((m) => m.name === name);
  return (record?.delegatesTo ?? []).filter((d): d is MethodName =>
    (METHOD_NAMES as readonly string[]).includes(d)
  );
}

/**
 * The options `method` takes from its delegates' choices (`tune`'s candidates, `bench`'s stored
 * tuning): each delegate's variant parameter groups (`sequence`: its split count and geometry) that
 * `chosen` holds for it and `fixed` (pinned options, or the method's own choice) does not set.
 */
export function delegatedOptions(
  method: MethodName,
  chosen: Partial<Record<MethodName, OptionValues>>,
  fixed: Readonly<Record<string, unknown>> = {},
): OptionValues {
  const out: OptionValues = {};
  for (const d of delegatesOf(method)) {
    const record = METHOD_LIST.find((m) => m.name === d);
    for (const v of record?.variants ?? []) {
      const key = v.params?.key;
      const value = key ? chosen[d]?.[key] : undefined;
      if (key && value !== undefined && !(key in fixed)) out[key] = value;
    }
  }
  return out;
}

/**
 * `methods` with each one's delegates that are among them moved before it (else in order; a cycle
 * of delegates, which no method record has, keeps the given order).
 */
export function delegatesFirst<T extends { name: MethodName }>(methods: readonly T[]): T[] {
  const out: T[] = [];
  const visiting = new Set<T>();
  const visit = (m: T) => {
    if (out.includes(m) || visiting.has(m)) return;
    visiting.add(m);
    for (const d of delegatesOf(m.name)) {
      const dm = methods.find((x) => x.name === d);
      if (dm) visit(dm);
    }
    out.push(m);
  };
  for (const m of methods) visit(m);
  return out;
}

/** Plan identity of a case: two candidates with equal identities run the same kernels. */
function identity(c: CaseResult): string {
  return JSON.stringify([c.sourceHash, c.kernel, c.stats, c.counts, c.dispatches]);
}

/**
 * Measures every candidate of every method on every tree and returns one entry per method. A
 * candidate that fails its check or errors on any tree cannot win; throws `Error` when no
 * candidate of a method ran on every tree.
 */
export async function tune(gpu: Gpu, timer: Timer, o: TuneOptions): Promise<TuningEntry[]> {
  if (o.trees.length === 0) throw new RangeError("tune() needs at least one tree");
  const caps = kernelCaps(gpu);
  const fixed = o.fixed ?? {};
  const chosen: Partial<Record<MethodName, OptionValues>> = { ...o.stored };
  const flush = o.timing.cold ? await createFlushPass(gpu, { bytes: o.flushBytes }) : undefined;
  const entries: TuningEntry[] = [];
  let clocks: ClockRecord | undefined;
  try {
    if (o.clockGuard) {
      const guard = await createClockGuard(gpu, timer, {
        calibrated: o.clockReference,
        now: o.now,
      });
      clocks = { guard, refs: new Map(), windows: new Map() };
    }
    for (const method of delegatesFirst(o.methods)) {
      const candidates = tuningCandidates(method.name, caps, o.dtype, {
        tunables: o.tunables,
        fixed,
      });
      const delegated = delegatedOptions(method.name, chosen, fixed);
      const base: MethodOptions = { ...DEFAULT_METHOD_OPTIONS, ...delegated, ...fixed };
      const results: CaseResult[][] = candidates.map(() => []);
      for (const [ti, t] of o.trees.entries()) {
        o.onStep?.(
          `${method.name} on ${t.name}: ${candidates.length} candidate(s) (${
            candidates.map(describeOptions).join(", ")
          })`,
        );
        const ix = new IndexedTree(t.tree);
        const problem = Problem.create(gpu, ix, {
          shape: o.shape,
          dtype: o.dtype,
          seed: (o.seed * 1_000_003 + ti) >>> 0,
        });
        try {
          const rows = sampleRows(ix.queryCount, o.shape.qHeads, o.verifyRows, o.seed ^ ti);
          const reference = referenceOf(problem, rows);
          const specs: CaseSpec[] = candidates.map((c, i) => ({
            key: `${t.name}/${method.name}#${i}`,
            method,
            options: { ...base, ...c } as MethodOptions,
          }));
          const cases = await runCases(gpu, timer, problem, specs, reference, {
            dtype: o.dtype,
            timing: o.timing,
            seed: o.seed,
            calibration: null,
            flush,
            now: o.now,
            clocks,
          });
          cases.forEach((c, i) => results[i]!.push(c));
        } finally {
          problem.destroy();
        }
      }
      const entry = score(method.name, o, candidates, results, clocks);
      if (Object.keys(delegated).length > 0) entry.delegated = delegated;
      chosen[method.name] = entry.choice;
      entries.push(entry);
    }
  } finally {
    flush?.destroy();
    clocks?.guard?.destroy();
  }
  return entries;
}

/** A case's clock fraction: the working speed over the median reference beside its samples. */
function clockFraction(c: CaseResult, clocks: ClockRecord | undefined): number | null {
  const working = clocks?.guard?.workingNs ?? null;
  const refs = (clocks?.refs.get(c.key) ?? []).filter((v): v is number => v !== null && v > 0);
  if (working === null || refs.length === 0 || c.timing === null) return null;
  return working / median(refs);
}

/** Scores candidates from their cases (one per tree) and picks the winner. */
function score(
  method: MethodName,
  o: TuneOptions,
  candidates: OptionValues[],
  results: CaseResult[][],
  clocks: ClockRecord | undefined,
): TuningEntry {
  const trees = o.trees.length;
  const out: CandidateResult[] = candidates.map((options, i) => {
    const cases = results[i]!;
    const bad = cases.find((c) => c.status !== "ok" || c.timing === null);
    const ids = cases.map(identity).join("\n");
    const sameAs = bad
      ? -1
      : candidates.findIndex((_, j) =>
        j < i && results[j]!.every((c) => c.status === "ok") &&
        results[j]!.map(identity).join("\n") === ids
      );
    return {
      options,
      kernel: cases[0]?.kernel ?? String(options.kernel ?? ""),
      status: bad ? bad.status : sameAs >= 0 ? "same" : "ok",
      message: bad
        ? `${bad.key.split("/")[0]}: ${bad.message ?? "no timing"}`
        : sameAs >= 0
        ? `runs the same kernels and plan as ${describeOptions(candidates[sameAs]!)}`
        : null,
      mediansNs: cases.map((c) => c.timing?.medianNs ?? null),
      score: null,
      sameAs: sameAs >= 0 ? sameAs : null,
      ...(clocks ? { clockFractions: cases.map((c) => clockFraction(c, clocks)) } : {}),
    };
  });
  const live = out.filter((c) => c.status === "ok");
  if (live.length === 0) {
    throw new Error(
      `No candidate of ${method} ran correctly on every tree: ${
        out.map((c) => `${describeOptions(c.options)}: ${c.message}`).join("; ")
      }`,
    );
  }
  for (let t = 0; t < trees; t++) {
    const best = Math.min(...live.map((c) => c.mediansNs[t]!));
    for (const c of live) c.score = (c.score ?? 1) * (c.mediansNs[t]! / best) ** (1 / trees);
  }
  // Within the tie margin of the best, prefer the candidate closest to the defaults: a choice
  // away from them has to be measurably better.
  const best = Math.min(...live.map((c) => c.score!));
  const margin = o.tieMargin ?? DEFAULT_TIE_MARGIN;
  const defaults = (c: CandidateResult) =>
    Object.entries(c.options).filter(([k, v]) => sameValue(TUNING_DEFAULTS[k], v)).length;
  const winner = live.filter((c) => c.score! <= best * (1 + margin)).reduce((a, b) =>
    defaults(b) > defaults(a) || (defaults(b) === defaults(a) && b.score! < a.score!) ? b : a
  );
  // Keep only the options that made a difference: some live candidate differs in them.
  const choice: OptionValues = {};
  for (const [k, v] of Object.entries(winner.options)) {
    if (live.some((c) => !sameValue(c.options[k], v))) choice[k] = v;
  }
  return {
    method,
    dtype: o.dtype,
    shape: o.shape.name,
    choice,
    winner: out.indexOf(winner),
    tunedAt: new Date().toISOString(),
    trees: o.trees.map((t) => {
      const f = treeFacts(t.tree);
      return { name: t.name, nodes: f.nodes, treeTokens: f.treeTokens, queries: f.queries };
    }),
    candidates: out,
    cold: o.timing.cold,
    ...(clocks
      ? {
        lowClock: out.flatMap((c) =>
          (c.clockFractions ?? []).flatMap((f, t) =>
            f !== null && f < LOW_CLOCK_FRACTION
              ? [`${describeOptions(c.options)} on ${o.trees[t]!.name}`]
              : []
          )
        ),
      }
      : {}),
  };
}

/** Default place of an adapter's tuning on a runtime. */
export function tuningPath(
  info: Parameters<typeof adapterKey>[0],
  runtime: RuntimeName,
  dir = "out/tuning",
): string {
  return `${dir.replace(/\/+$/, "")}/${adapterKey(info)}-${runtime}.json`;
}

/** A tuning file that breaks the format; names the file. A `SyntaxError`: bad input, exit 2. */
export class TuningError extends SyntaxError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "TuningError";
  }
}

/** The kernel variants' parameter groups by key (`mma`, `fma`, ...), from the method records. */
const PARAM_GROUPS: ReadonlyMap<string, VariantParams> = new Map(
  METHOD_LIST.flatMap((m) =>
    m.variants.flatMap((v) => (v.params ? [[v.params.key, v.params]] : []))
  ),
);

/** Checks one option value against the method records; returns why it is wrong, or null. */
function badOption(name: string, value: unknown): string | null {
  if (name === "kernel") {
    return (KERNEL_CHOICES as readonly unknown[]).includes(value)
      ? null
      : `one of ${KERNEL_CHOICES.join(", ")}`;
  }
  const option = METHOD_OPTIONS.find((o) => o.key === name);
  if (option) return option.valid(value) ? null : option.want;
  const group = PARAM_GROUPS.get(name);
  if (group) return badParamGroup(group, value);
  const known = [...METHOD_OPTIONS.map((o) => o.key), "kernel", ...PARAM_GROUPS.keys()];
  return `an unknown method option (known: ${known.join(", ")})`;
}

/**
 * Validates a tuning document (text of `path`); throws {@linkcode TuningError} naming the file and
 * the field. With `expect`, the file must belong to that adapter key and runtime.
 */
export function parseTuning(
  text: string,
  path: string,
  expect?: { adapterKey: string; runtime: RuntimeName },
): TuningDocument {
  const fail = (what: string): never => {
    throw new TuningError(
      `${path}: ${what} (a ${TUNING_FORMAT} version ${TUNING_VERSION} file, written by deft-bench tune; tune again or delete it)`,
    );
  };
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return fail(`not valid JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) fail("not a JSON object");
  if (doc.format !== TUNING_FORMAT) fail(`format is ${JSON.stringify(doc.format)}`);
  if (doc.version !== TUNING_VERSION) fail(`version ${JSON.stringify(doc.version)} is unknown`);
  if (typeof doc.adapterKey !== "string") fail("adapterKey must be a string");
  if (typeof doc.adapter !== "string") fail("adapter must be a string");
  const rt = doc.runtime as Record<string, unknown> | null;
  if (
    typeof rt !== "object" || rt === null || typeof rt.version !== "string" ||
    !["deno", "dawn"].includes(rt.name as string)
  ) fail("runtime must be {name: deno or dawn, version}");
  if (!Array.isArray(doc.entries)) fail("entries must be an array");
  const seen = new Set<string>();
  (doc.entries as unknown[]).forEach((e, i) => {
    const at = `entries[${i}]`;
    const o = e as Record<string, unknown>;
    if (typeof o !== "object" || o === null) fail(`${at} must be an object`);
    if (!(METHOD_NAMES as readonly unknown[]).includes(o.method)) {
      fail(`${at}.method must be a method name, got ${JSON.stringify(o.method)}`);
    }
    if (o.dtype !== "f16" && o.dtype !== "f32") fail(`${at}.dtype must be f16 or f32`);
    if (typeof o.shape !== "string" || typeof o.tunedAt !== "string") {
      fail(`${at}.shape and ${at}.tunedAt must be strings`);
    }
    if (!Array.isArray(o.trees) || !Array.isArray(o.candidates)) {
      fail(`${at}.trees and ${at}.candidates must be arrays`);
    }
    const n = (o.candidates as unknown[]).length;
    if (!Number.isSafeInteger(o.winner) || (o.winner as number) < 0 || (o.winner as number) >= n) {
      fail(`${at}.winner must be the index of a candidate (0 to ${n - 1})`);
    }
    const choice = o.choice as Record<string, unknown>;
    if (typeof choice !== "object" || choice === null || Array.isArray(choice)) {
      fail(`${at}.choice must be an object`);
    }
    for (const [k, v] of Object.entries(choice)) {
      const why = badOption(k, v);
      if (why) fail(`${at}.choice.${k} must be ${why}, got ${JSON.stringify(v)}`);
    }
    if (o.cold !== undefined && typeof o.cold !== "boolean") fail(`${at}.cold must be a boolean`);
    const id = `${o.method}/${o.dtype}`;
    if (seen.has(id)) fail(`${at} repeats ${o.method} ${o.dtype}`);
    seen.add(id);
  });
  const d = doc as unknown as TuningDocument;
  if (expect && d.adapterKey !== expect.adapterKey) {
    throw new TuningError(
      `${path} was tuned on ${d.adapterKey}, not on this adapter (${expect.adapterKey})`,
    );
  }
  if (expect && d.runtime.name !== expect.runtime) {
    throw new TuningError(
      `${path} was tuned on runtime ${d.runtime.name}, not ${expect.runtime}`,
    );
  }
  return d;
}

/** Reads and validates a tuning file; null when it does not exist (see {@linkcode parseTuning}). */
export async function loadTuning(
  path: string,
  expect?: { adapterKey: string; runtime: RuntimeName },
): Promise<TuningDocument | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return parseTuning(text, path, expect);
}

/** `doc` with `entries` replacing those of the same method and dtype (a new document if null). */
export function mergeTuning(
  doc: TuningDocument | null,
  meta: Pick<TuningDocument, "adapterKey" | "adapter" | "runtime">,
  entries: readonly TuningEntry[],
): TuningDocument {
  const id = (e: TuningEntry) => `${e.method}/${e.dtype}`;
  const fresh = new Set(entries.map(id));
  return {
    format: TUNING_FORMAT,
    version: TUNING_VERSION,
    ...meta,
    entries: [...(doc?.entries ?? []).filter((e) => !fresh.has(id(e))), ...entries],
  };
}

/** Writes a tuning file atomically (replacing it: tuning updates its store). */
export async function saveTuning(path: string, doc: TuningDocument): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(doc, null, 1) + "\n", { force: true });
}

/** What a stored tuning gives a run: the options per method for `dtype`. */
export interface StoredChoices {
  /** Options per method (only the stored choices, not defaults). */
  byMethod: Partial<Record<MethodName, OptionValues>>;
  /** When the newest of them was measured. */
  tunedAt: string;
  /** Shapes the entries were measured with. */
  shapes: string[];
  /**
   * Whether the entries timed cold caches: true or false when all of them say the same, null when
   * they differ or some predate the record (`TuningEntry.cold`).
   */
  cold: boolean | null;
}

/** The stored choices of `methods` for `dtype`; null when none is stored. */
export function storedChoices(
  doc: TuningDocument,
  dtype: Dtype,
  methods: readonly MethodName[],
): StoredChoices | null {
  const found = doc.entries.filter((e) => e.dtype === dtype && methods.includes(e.method));
  if (found.length === 0) return null;
  const byMethod: Partial<Record<MethodName, OptionValues>> = {};
  for (const e of found) byMethod[e.method] = { ...e.choice };
  return {
    byMethod,
    tunedAt: found.map((e) => e.tunedAt).sort().at(-1)!,
    shapes: [...new Set(found.map((e) => e.shape))],
    cold: found.every((e) => e.cold === true)
      ? true
      : found.every((e) => e.cold === false)
      ? false
      : null,
  };
}
