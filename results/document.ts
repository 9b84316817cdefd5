/**
 * Reading results documents: `parseResults` checks the format tag, the version and every field the
 * reporters read, with messages that name the file and the field; small helpers index cases by key,
 * label runs and format values for tables.
 *
 * Version 1 documents (before runtimes) are upgraded in memory to version 2: every case, total and
 * the run itself are Deno's built-in WebGPU (`deno` with the Deno version the document recorded),
 * every case ran the FMA kernels (the only ones then), and keys stay as they were (Deno keys carry
 * no runtime suffix), so old runs compare with new Deno runs case by case.
 *
 * @module
 */

import {
  type Calibration,
  type CaseResult,
  DEFAULT_RUNTIME,
  KERNEL_FAMILIES,
  READABLE_RESULTS_VERSIONS,
  RESULTS_FORMAT,
  RESULTS_RUNTIMES,
  RESULTS_VERSION,
  type ResultsDocument,
  type ResultsRuntime,
  type RuntimeRun,
  type SnapshotResult,
  type WorkloadResult,
} from "./schema.ts";
import { upgradeRooflines } from "./roofline.ts";

/**
 * A results document that breaks the format; the message names the file and the field. A
 * `SyntaxError`, so the command line treats it as bad input (exit 2).
 */
export class ResultsError extends SyntaxError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "ResultsError";
  }
}

type Obj = Record<string, unknown>;

/** Short rendering of a bad value for a message. */
function show(value: unknown): string {
  if (value === undefined) return "nothing";
  // JSON has no Infinity: a number like 1e400 reads as one. JSON.stringify would say null.
  if (typeof value === "number" && !Number.isFinite(value)) {
    return Number.isNaN(value) ? "NaN" : `${value} (a number too large to represent)`;
  }
  try {
    const s = JSON.stringify(value);
    if (s === undefined) return String(value);
    return s.length > 60 ? s.slice(0, 57) + "..." : s;
  } catch {
    return String(value);
  }
}

/** Field checks that throw {@linkcode ResultsError} naming `file: field`. */
class Checker {
  constructor(readonly file: string) {}

  fail(at: string, what: string, value: unknown): never {
    throw new ResultsError(`${this.file}: ${at} must be ${what}, got ${show(value)}`);
  }
  obj(v: unknown, at: string): Obj {
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.fail(at, "an object", v);
    return v as Obj;
  }
  arr(v: unknown, at: string): unknown[] {
    if (!Array.isArray(v)) this.fail(at, "an array", v);
    return v;
  }
  str(o: Obj, k: string, at: string): string {
    const v = o[k];
    if (typeof v !== "string") this.fail(`${at}.${k}`, "a string", v);
    return v;
  }
  strOrNull(o: Obj, k: string, at: string): string | null {
    const v = o[k];
    if (v !== null && typeof v !== "string") this.fail(`${at}.${k}`, "a string or null", v);
    return v;
  }
  num(o: Obj, k: string, at: string): number {
    const v = o[k];
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(`${at}.${k}`, "a finite number", v);
    return v;
  }
  /** A finite number above 0 (timings, rates: a zero or negative one is a broken measurement). */
  positive(o: Obj, k: string, at: string): number {
    const v = this.num(o, k, at);
    if (!(v > 0)) this.fail(`${at}.${k}`, "a positive number", v);
    return v;
  }
  nonNegative(o: Obj, k: string, at: string): number {
    const v = this.num(o, k, at);
    if (!(v >= 0)) this.fail(`${at}.${k}`, "a non-negative number", v);
    return v;
  }
  numOrNull(o: Obj, k: string, at: string): number | null {
    const v = o[k];
    if (v === null) return null;
    return this.num(o, k, at);
  }
  bool(o: Obj, k: string, at: string): boolean {
    const v = o[k];
    if (typeof v !== "boolean") this.fail(`${at}.${k}`, "true or false", v);
    return v;
  }
  oneOf<T extends string>(o: Obj, k: string, at: string, allowed: readonly T[]): T {
    const v = o[k];
    if (typeof v !== "string" || !allowed.includes(v as T)) {
      this.fail(`${at}.${k}`, `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`, v);
    }
    return v as T;
  }
  nums(o: Obj, k: string, at: string, fields: readonly string[]): void {
    const sub = this.obj(o[k], `${at}.${k}`);
    for (const f of fields) this.num(sub, f, `${at}.${k}`);
  }
  strings(o: Obj, k: string, at: string): void {
    const a = this.arr(o[k], `${at}.${k}`);
    a.forEach((s, i) => {
      if (typeof s !== "string") this.fail(`${at}.${k}[${i}]`, "a string", s);
    });
  }
  numberArray(o: Obj, k: string, at: string): number[] {
    const a = this.arr(o[k], `${at}.${k}`);
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (typeof v !== "number" || !Number.isFinite(v)) {
        this.fail(`${at}.${k}[${i}]`, "a finite number", v);
      }
    }
    return a as number[];
  }
}

const PAPER_IO_FIELDS = ["kvBytes", "maskBytes", "partialBytes", "totalBytes"] as const;
const REAL_IO_FIELDS = [
  "kvBytes",
  "qBytes",
  "maskBytes",
  "metadataBytes",
  "partialBytes",
  "logitsBytes",
  "outputBytes",
  "totalBytes",
] as const;
const FACT_FIELDS = [
  "nodes",
  "depth",
  "treeTokens",
  "queries",
  "pathTokens",
  "sharingFactor",
  "leaves",
] as const;

function checkAdapter(c: Checker, v: unknown, at: string): void {
  const a = c.obj(v, at);
  for (const k of ["vendor", "architecture", "device", "description"]) c.str(a, k, at);
  c.bool(a, "isFallbackAdapter", at);
  c.strings(a, "features", at);
  const limits = c.obj(a.limits, `${at}.limits`);
  for (const k of Object.keys(limits)) c.num(limits, k, `${at}.limits`);
}

function checkEnvironment(c: Checker, v: unknown): void {
  const at = "environment";
  const e = c.obj(v, at);
  checkAdapter(c, e.adapter, `${at}.adapter`);
  for (const k of ["deno", "v8", "typescript", "os", "arch", "startedAt", "finishedAt"]) {
    c.str(e, k, at);
  }
  for (const k of ["startedAt", "finishedAt"]) {
    if (Number.isNaN(Date.parse(e[k] as string))) c.fail(`${at}.${k}`, "an ISO time", e[k]);
  }
  c.strOrNull(e, "cpu", at);
  c.strOrNull(e, "gitCommit", at);
  if (e.gitDirty !== null) c.bool(e, "gitDirty", at);
  c.strings(e, "command", at);
  if (e.nvidiaSmi !== null) {
    const n = c.obj(e.nvidiaSmi, `${at}.nvidiaSmi`);
    c.obj(n.before, `${at}.nvidiaSmi.before`);
    c.obj(n.after, `${at}.nvidiaSmi.after`);
  }
  c.numOrNull(e, "tickRatio", at);
  if (e.clock !== undefined && e.clock !== null) checkRunClock(c, e.clock, `${at}.clock`);
}

function checkRunClock(c: Checker, v: unknown, at: string): void {
  const o = c.obj(v, at);
  c.str(c.obj(o.reference, `${at}.reference`), "kernel", `${at}.reference`);
  c.nums(o, "reference", at, ["workgroups", "iterations", "repetitions"]);
  for (
    const k of ["workingNs", "lowClockFraction", "spinUps", "stableSpinUps", "spinUpMs", "leadNs"]
  ) c.num(o, k, at);
  c.num(o, "lowClockCases", at);
  if (o.retriedSamples !== undefined) c.num(o, "retriedSamples", at);
  c.oneOf(o, "workingSource", at, ["calibration", "run"]);
  if (o.smi !== null) {
    const so = c.obj(o.smi, `${at}.smi`);
    c.num(so, "readings", `${at}.smi`);
    c.numOrNull(so, "workingSmMHz", `${at}.smi`);
    c.numOrNull(so, "maxSmMHz", `${at}.smi`);
  }
}

function checkCaseClock(c: Checker, v: unknown, at: string): void {
  const o = c.obj(v, at);
  for (const k of ["fraction", "minFraction", "lowSamples"]) c.num(o, k, at);
  if (o.retriedSamples !== undefined) c.num(o, "retriedSamples", at);
  c.numOrNull(o, "smMHz", at);
  c.numOrNull(o, "smFraction", at);
  c.bool(o, "lowClock", at);
}

function checkSettings(c: Checker, v: unknown, version: number): void {
  const at = "settings";
  const s = c.obj(v, at);
  c.strings(s, "methods", at);
  if (version >= 2) {
    c.oneOf(s, "kernel", at, KERNEL_FAMILIES);
    const rs = c.arr(s.runtimes, `${at}.runtimes`);
    if (rs.length === 0) c.fail(`${at}.runtimes`, "a non-empty array", rs);
    rs.forEach((r, i) => {
      if (!(RESULTS_RUNTIMES as readonly unknown[]).includes(r) || rs.indexOf(r) !== i) {
        c.fail(`${at}.runtimes[${i}]`, `a runtime named once (${RESULTS_RUNTIMES.join(", ")})`, r);
      }
    });
  }
  c.oneOf(s, "dtype", at, ["f16", "f32"]);
  const shape = c.obj(s.shape, `${at}.shape`);
  c.str(shape, "name", `${at}.shape`);
  for (const k of ["qHeads", "kvHeads", "headDim", "layers"]) c.num(shape, k, `${at}.shape`);
  for (const k of ["blockSize", "chunkSize", "samplesPerRun", "seed", "scale", "verifyRows"]) {
    c.num(s, k, at);
  }
  if (!(s.blockSize as number > 0)) c.fail(`${at}.blockSize`, "positive", s.blockSize);
  c.strOrNull(s, "scaleReason", at);
  if (s.smoke !== undefined) c.strOrNull(s, "smoke", at);
  c.bool(s, "verify", at);
  const t = c.obj(s.timing, `${at}.timing`);
  c.oneOf(t, "mode", `${at}.timing`, ["timestamp", "wallclock-batched"]);
  for (
    const k of [
      "repetitionsPerSample",
      "warmupMs",
      "budgetMs",
      "minSamples",
      "maxSamples",
      "targetRelativeCi",
    ]
  ) c.num(t, k, `${at}.timing`);
  c.bool(t, "cold", `${at}.timing`);
  c.bool(t, "interleaved", `${at}.timing`);
}

function checkCalibration(c: Checker, v: unknown, at = "calibration"): void {
  if (v === null) return;
  const o = c.obj(v, at);
  c.str(o, "adapterKey", at);
  c.str(o, "measuredAt", at);
  const rb = c.arr(o.readBandwidth, `${at}.readBandwidth`);
  if (rb.length === 0) c.fail(`${at}.readBandwidth`, "a non-empty array", rb);
  rb.forEach((r, i) => {
    const ro = c.obj(r, `${at}.readBandwidth[${i}]`);
    c.positive(ro, "bytes", `${at}.readBandwidth[${i}]`);
    c.positive(ro, "bytesPerS", `${at}.readBandwidth[${i}]`);
  });
  // Rooflines divide by these: zero, negative or missing ceilings make every fraction nonsense.
  for (const k of ["peakReadBytesPerS", "f32FlopsPerS"]) c.positive(o, k, at);
  if (o.f16FlopsPerS !== null) c.positive(o, "f16FlopsPerS", at);
  if (o.residentWorkgroups !== undefined && o.residentWorkgroups !== null) {
    c.positive(o, "residentWorkgroups", at);
  }
  if (o.matrixFlopsPerS !== undefined && o.matrixFlopsPerS !== null) {
    c.positive(o, "matrixFlopsPerS", at);
  }
  for (const k of ["dispatchNs", "extraDispatchNs"]) c.nonNegative(o, k, at);
  if (o.l2ReadBandwidth !== undefined) {
    c.arr(o.l2ReadBandwidth, `${at}.l2ReadBandwidth`).forEach((r, i) => {
      const ro = c.obj(r, `${at}.l2ReadBandwidth[${i}]`);
      c.positive(ro, "bytes", `${at}.l2ReadBandwidth[${i}]`);
      c.positive(ro, "bytesPerS", `${at}.l2ReadBandwidth[${i}]`);
    });
  }
  if (o.l2ReadBytesPerS !== undefined && o.l2ReadBytesPerS !== null) {
    c.positive(o, "l2ReadBytesPerS", at);
  }
  if (o.reference !== undefined && o.reference !== null) {
    const ra = `${at}.reference`;
    const ro = c.obj(o.reference, ra);
    c.str(ro, "kernel", ra);
    c.oneOf(ro, "timingMode", ra, ["timestamp", "wallclock-batched"]);
    for (const k of ["workgroups", "iterations", "repetitions"]) c.num(ro, k, ra);
    c.positive(ro, "nsPerDispatch", ra);
  }
}

/**
 * Validates device ceilings (the `calibration` of a results or calibration document) with the
 * rules `parseResults` applies: every ceiling a positive finite number, at least one read size.
 * Throws {@linkcode ResultsError} naming `file` and the field.
 */
export function validateCalibration(value: unknown, file: string, at = "calibration"): Calibration {
  const c = new Checker(file);
  if (value === null) c.fail(at, "an object", value);
  checkCalibration(c, value, at);
  return value as Calibration;
}

function checkPartial(c: Checker, v: unknown): void {
  if (v === undefined || v === null) return;
  const at = "partial";
  const o = c.obj(v, at);
  c.str(o, "reason", at);
  const done = c.nonNegative(o, "completedCases", at);
  const planned = c.nonNegative(o, "plannedCases", at);
  if (done > planned) c.fail(`${at}.completedCases`, `at most plannedCases (${planned})`, done);
}

function checkRuntimes(c: Checker, v: unknown, names: readonly unknown[]): void {
  const rs = c.arr(v, "runtimes");
  if (rs.length !== names.length) {
    c.fail("runtimes", `one entry per settings.runtimes (${names.length})`, rs.length);
  }
  rs.forEach((r, i) => {
    const at = `runtimes[${i}]`;
    const o = c.obj(r, at);
    const name = c.oneOf(o, "name", at, RESULTS_RUNTIMES);
    if (names[i] !== name) {
      c.fail(`${at}.name`, `settings.runtimes[${i}] (${show(names[i])})`, name);
    }
    c.str(o, "version", at);
    c.strings(o, "flags", at);
    c.strOrNull(o, "source", at);
    checkAdapter(c, o.adapter, `${at}.adapter`);
    checkCalibration(c, o.calibration, `${at}.calibration`);
    c.numOrNull(o, "tickRatio", at);
    c.oneOf(o, "timingMode", at, ["timestamp", "wallclock-batched"]);
    if (o.clock !== undefined && o.clock !== null) checkRunClock(c, o.clock, `${at}.clock`);
    if (o.tuning !== null) {
      const t = c.obj(o.tuning, `${at}.tuning`);
      c.str(t, "file", `${at}.tuning`);
      c.str(t, "tunedAt", `${at}.tuning`);
      c.obj(t.applied, `${at}.tuning.applied`);
    }
  });
}

function checkOptions(c: Checker, o: Obj, at: string, nested = true): void {
  for (const [k, v] of Object.entries(o)) {
    if (nested && typeof v === "object" && v !== null && !Array.isArray(v)) {
      checkOptions(c, v as Obj, `${at}.${k}`, false);
    } else if (typeof v !== "string" && (typeof v !== "number" || !Number.isFinite(v))) {
      c.fail(
        `${at}.${k}`,
        nested ? "a number, a string or an object of them" : "a number or a string",
        v,
      );
    }
  }
}

function checkCase(c: Checker, v: unknown, at: string, version: number): string {
  const o = c.obj(v, at);
  const key = c.str(o, "key", at);
  if (key === "") c.fail(`${at}.key`, "a non-empty string", key);
  c.str(o, "method", at);
  if (version >= 2) {
    c.oneOf(o, "runtime", at, RESULTS_RUNTIMES);
    c.str(o, "kernel", at);
    checkOptions(c, c.obj(o.options, `${at}.options`), `${at}.options`);
  }
  c.str(o, "sourceHash", at);
  c.oneOf(o, "status", at, ["ok", "failed", "error"]);
  c.strOrNull(o, "message", at);
  const counts = c.obj(o.counts, `${at}.counts`);
  c.nums(counts, "paper", `${at}.counts`, PAPER_IO_FIELDS);
  c.nums(counts, "real", `${at}.counts`, REAL_IO_FIELDS);
  c.num(counts, "flops", `${at}.counts`);
  c.num(counts, "usefulFlops", `${at}.counts`);
  if (counts.dramBytes !== undefined) c.num(counts, "dramBytes", `${at}.counts`);
  const stats = c.obj(o.stats, `${at}.stats`);
  for (const k of Object.keys(stats)) c.num(stats, k, `${at}.stats`);
  for (const k of ["dispatches", "prepareMs", "planMs"]) c.num(o, k, at);
  if (o.timing !== null) {
    const ta = `${at}.timing`;
    const t = c.obj(o.timing, ta);
    const samples = c.numberArray(t, "samplesNs", ta);
    if (samples.length === 0) c.fail(`${ta}.samplesNs`, "a non-empty array", samples);
    // A latency of zero or less is no measurement: ratios against it are infinite or negative.
    samples.forEach((x, i) => {
      if (!(x > 0)) c.fail(`${ta}.samplesNs[${i}]`, "a positive number of ns", x);
    });
    for (const k of ["medianNs", "meanNs", "minNs", "maxNs"]) c.positive(t, k, ta);
    c.nonNegative(t, "madNs", ta);
    const ci = c.numberArray(t, "ci95Ns", ta);
    if (ci.length !== 2) c.fail(`${ta}.ci95Ns`, "[low, high]", ci);
    if (!(ci[0]! > 0 && ci[1]! >= ci[0]!)) {
      c.fail(`${ta}.ci95Ns`, "[low, high] with 0 < low <= high", ci);
    }
    c.nums(t, "outliers", ta, ["lowSevere", "lowMild", "highMild", "highSevere"]);
    if (t.repetitions !== undefined) c.positive(t, "repetitions", ta);
  }
  if (o.roofline !== null) {
    const ra = `${at}.roofline`;
    const r = c.obj(o.roofline, ra);
    for (
      const k of ["achievedBytesPerS", "achievedFlopsPerS", "ioTimeNs", "flopTimeNs", "fraction"]
    ) c.num(r, k, ra);
    c.oneOf(r, "bound", ra, ["dram", "l2", "compute", "memory"]);
    for (const k of ["dramBytes", "dramTimeNs"]) if (r[k] !== undefined) c.num(r, k, ra);
    if (r.l2TimeNs !== undefined) c.numOrNull(r, "l2TimeNs", ra);
  }
  if (o.clock !== undefined && o.clock !== null) checkCaseClock(c, o.clock, `${at}.clock`);
  const va = `${at}.verification`;
  const ver = c.obj(o.verification, va);
  c.bool(ver, "checked", va);
  c.bool(ver, "passed", va);
  for (const k of ["rows", "maxRelError", "tolerance", "unwritten", "nonFinite"]) c.num(ver, k, va);
  return key;
}

function checkTree(c: Checker, v: unknown, at: string): void {
  if (v === null) return;
  const t = c.obj(v, at);
  c.arr(t.nodes, `${at}.nodes`).forEach((n, i) => {
    const no = c.obj(n, `${at}.nodes[${i}]`);
    c.num(no, "id", `${at}.nodes[${i}]`);
    c.num(no, "tokens", `${at}.nodes[${i}]`);
    if (no.parent !== null) c.num(no, "parent", `${at}.nodes[${i}]`);
  });
  c.arr(t.queries, `${at}.queries`).forEach((q, i) => {
    c.num(c.obj(q, `${at}.queries[${i}]`), "node", `${at}.queries[${i}]`);
  });
}

function checkWorkload(
  c: Checker,
  v: unknown,
  at: string,
  keys: Map<string, string>,
  version: number,
): void {
  const w = c.obj(v, at);
  c.str(w, "name", at);
  c.str(w, "kind", at);
  c.obj(w.params, `${at}.params`);
  c.num(w, "iterations", at);
  c.nums(w, "runFacts", at, ["treeTokens", "pathTokens", "queries", "kvIoReduction"]);
  c.arr(w.snapshots, `${at}.snapshots`).forEach((s, i) => {
    const sa = `${at}.snapshots[${i}]`;
    const so = c.obj(s, sa);
    c.num(so, "iteration", sa);
    c.num(so, "weight", sa);
    c.nums(so, "facts", sa, FACT_FIELDS);
    checkTree(c, so.tree, `${sa}.tree`);
    c.arr(so.cases, `${sa}.cases`).forEach((k, j) => {
      const ca = `${sa}.cases[${j}]`;
      const key = checkCase(c, k, ca, version);
      const prior = keys.get(key);
      if (prior !== undefined) {
        throw new ResultsError(`${c.file}: ${ca}.key ${show(key)} is a duplicate of ${prior}.key`);
      }
      keys.set(key, ca);
    });
  });
  c.arr(w.totals, `${at}.totals`).forEach((t, i) => {
    const ta = `${at}.totals[${i}]`;
    const to = c.obj(t, ta);
    c.str(to, "method", ta);
    if (version >= 2) c.oneOf(to, "runtime", ta, RESULTS_RUNTIMES);
    for (const k of ["runNs", "modelRunNs", "meanIterationNs", "realBytes"]) c.num(to, k, ta);
    c.numOrNull(to, "speedupVsSequence", ta);
    c.nums(to, "paperIo", ta, PAPER_IO_FIELDS);
    c.bool(to, "complete", ta);
  });
  if (w.sweep !== null) {
    const so = c.obj(w.sweep, `${at}.sweep`);
    c.str(so, "parameter", `${at}.sweep`);
    c.num(so, "value", `${at}.sweep`);
  }
}

/**
 * Parses and validates a results document. `path` names the file in messages. Throws
 * {@linkcode ResultsError} for bad JSON, a foreign format, an unknown version, a missing or
 * mistyped field (named as `file: workloads[0].snapshots[1].cases[2].timing.medianNs ...`), or a
 * duplicate case key. A version 1 document comes back upgraded to the current version (see the
 * module documentation).
 */
export function parseResults(text: string, path: string): ResultsDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ResultsError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  const c = new Checker(path);
  const o = c.obj(doc, "the document");
  if (o.format !== RESULTS_FORMAT) {
    throw new ResultsError(
      `${path}: format must be ${show(RESULTS_FORMAT)}, got ${
        show(o.format)
      } (is this a results document from \`deft-bench bench\`?)`,
    );
  }
  const version = o.version as number;
  if (!READABLE_RESULTS_VERSIONS.includes(version)) {
    throw new ResultsError(
      `${path}: version ${
        show(o.version)
      } of ${RESULTS_FORMAT} is not supported (this build reads versions ${
        READABLE_RESULTS_VERSIONS.join(" and ")
      })`,
    );
  }
  checkEnvironment(c, o.environment);
  checkSettings(c, o.settings, version);
  checkCalibration(c, o.calibration);
  if (version >= 2) checkRuntimes(c, o.runtimes, (o.settings as Obj).runtimes as unknown[]);
  checkPartial(c, o.partial);
  const keys = new Map<string, string>();
  c.arr(o.workloads, "workloads").forEach((w, i) =>
    checkWorkload(c, w, `workloads[${i}]`, keys, version)
  );
  c.arr(o.warnings, "warnings").forEach((w, i) => {
    const wo = c.obj(w, `warnings[${i}]`);
    c.str(wo, "code", `warnings[${i}]`);
    c.str(wo, "message", `warnings[${i}]`);
    c.strOrNull(wo, "key", `warnings[${i}]`);
  });
  if (version === 1) upgradeV1(o);
  if (version >= 2) checkRuntimeKeys(c, o as unknown as ResultsDocument);
  const parsed = doc as ResultsDocument;
  upgradeRooflines(parsed);
  return parsed;
}

/** Every case's key and runtime agree, and its runtime is one of the run's. */
function checkRuntimeKeys(c: Checker, doc: ResultsDocument): void {
  const runtimes = new Set<ResultsRuntime>(doc.settings.runtimes);
  doc.workloads.forEach((w, i) =>
    w.snapshots.forEach((s, j) =>
      s.cases.forEach((k, l) => {
        const at = `workloads[${i}].snapshots[${j}].cases[${l}]`;
        if (!runtimes.has(k.runtime)) {
          c.fail(
            `${at}.runtime`,
            `one of settings.runtimes (${[...runtimes].join(", ")})`,
            k.runtime,
          );
        }
        const suffix = k.runtime === DEFAULT_RUNTIME ? "" : `@${k.runtime}`;
        if (!k.key.endsWith(`/${k.method}${suffix}`)) {
          c.fail(
            `${at}.key`,
            `a key ending in /${k.method}${suffix} (runtime ${k.runtime})`,
            k.key,
          );
        }
      })
    )
  );
}

/**
 * Upgrades a checked version 1 document in place: one runtime, Deno's built-in WebGPU at the Deno
 * version the document recorded; every case ran the FMA kernels with the run's block and chunk
 * sizes; keys unchanged.
 */
function upgradeV1(o: Obj): void {
  const doc = o as unknown as ResultsDocument;
  const e = doc.environment;
  const s = doc.settings as ResultsDocument["settings"] & Record<string, unknown>;
  s.kernel = "fma";
  s.runtimes = [DEFAULT_RUNTIME];
  const runtime: RuntimeRun = {
    name: DEFAULT_RUNTIME,
    version: `deno ${e.deno}`,
    flags: [],
    source: null,
    adapter: e.adapter,
    calibration: doc.calibration,
    tickRatio: e.tickRatio,
    timingMode: s.timing.mode,
    tuning: null,
  };
  doc.runtimes = [runtime];
  for (const w of doc.workloads) {
    for (const snap of w.snapshots) {
      for (const k of snap.cases) {
        k.runtime = DEFAULT_RUNTIME;
        k.kernel = "fma";
        k.options = { blockSize: s.blockSize, chunkSize: s.chunkSize };
      }
    }
    for (const t of w.totals) t.runtime = DEFAULT_RUNTIME;
  }
  (o as { version: number }).version = RESULTS_VERSION;
}

/** Reads and parses a results file (see {@linkcode parseResults}). */
export async function readResults(path: string): Promise<ResultsDocument> {
  return parseResults(await Deno.readTextFile(path), path);
}

/** One line of a chart or column of a table: a method on a runtime. */
export interface Series {
  method: string;
  runtime: ResultsRuntime;
  /** `deft-flatten`, or `deft-flatten (dawn)` when the run is not Deno's alone. */
  label: string;
}

/**
 * A series label: the method name in a run of Deno's built-in WebGPU alone (as before runtimes
 * existed), else `method (runtime)`.
 */
export function seriesLabel(
  method: string,
  runtime: ResultsRuntime,
  runtimes: readonly ResultsRuntime[],
): string {
  return runtimes.length === 1 && runtime === DEFAULT_RUNTIME ? method : `${method} (${runtime})`;
}

/**
 * The series of a run, method by method with the runtimes of each side by side (methods in
 * `order`'s order, then any others in document order), for those with at least one case.
 */
export function docSeries(
  doc: ResultsDocument,
  order: (methods: Iterable<string>) => string[] = (m) => [...new Set(m)],
): Series[] {
  const present = new Set<string>();
  for (const w of doc.workloads) {
    for (const s of w.snapshots) for (const c of s.cases) present.add(`${c.method}\n${c.runtime}`);
  }
  const methods = order([
    ...doc.settings.methods,
    ...doc.workloads.flatMap((w) => w.snapshots.flatMap((s) => s.cases.map((c) => c.method))),
  ]);
  const runtimes = doc.settings.runtimes;
  return methods.flatMap((method) =>
    runtimes.filter((runtime) => present.has(`${method}\n${runtime}`)).map((runtime) => ({
      method,
      runtime,
      label: seriesLabel(method, runtime, runtimes),
    }))
  );
}

/** A case with the workload and snapshot it belongs to. */
export interface CaseRef {
  readonly key: string;
  readonly workload: WorkloadResult;
  readonly snapshot: SnapshotResult;
  readonly case: CaseResult;
}

/** Every case of a document, in document order. */
export function caseRefs(doc: ResultsDocument): CaseRef[] {
  const out: CaseRef[] = [];
  for (const workload of doc.workloads) {
    for (const snapshot of workload.snapshots) {
      for (const c of snapshot.cases) out.push({ key: c.key, workload, snapshot, case: c });
    }
  }
  return out;
}

/** Cases indexed by key (keys are unique in a parsed document). */
export function indexCases(doc: ResultsDocument): Map<string, CaseRef> {
  return new Map(caseRefs(doc).map((r) => [r.key, r]));
}

/**
 * Why a case cannot be used as a measurement, or null when it can: failed or errored, no timing,
 * or a verification that ran and did not pass. A case with a reason is never drawn as fast.
 */
export function caseProblem(c: CaseResult): string | null {
  if (c.status !== "ok") return `${c.status}${c.message ? `: ${c.message}` : ""}`;
  if (c.verification.checked && !c.verification.passed) {
    return `verification failed (max relative error ${
      c.verification.maxRelError.toPrecision(3)
    } > tolerance ${c.verification.tolerance})`;
  }
  if (c.timing === null || c.timing.samplesNs.length === 0) return "no timing";
  return null;
}

/** A short run label: `abc1234+dirty 2025-01-02 03:04`. */
export function runLabel(doc: ResultsDocument): string {
  const e = doc.environment;
  const commit = e.gitCommit ? e.gitCommit.slice(0, 7) + (e.gitDirty ? "+dirty" : "") : "no commit";
  return `${commit} ${e.startedAt.slice(0, 16).replace("T", " ")}`;
}

/** A file-name-safe id of a run: start time and commit (`20250102T030405-abc1234`). */
export function runSlug(doc: ResultsDocument): string {
  const e = doc.environment;
  const t = new Date(e.startedAt);
  const time = Number.isNaN(t.getTime())
    ? "undated"
    : t.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "");
  const commit = (e.gitCommit ?? "nocommit").replace(/[^0-9A-Za-z]/g, "").slice(0, 7) ||
    "nocommit";
  return `${time}-${commit}`;
}

/** Runs ordered by start time, then commit (stable for equal keys). */
export function orderRuns<T extends { doc: ResultsDocument }>(runs: readonly T[]): T[] {
  return runs
    .map((r, i) => ({ r, i, t: Date.parse(r.doc.environment.startedAt) }))
    .sort((a, b) =>
      (a.t - b.t) ||
      (a.r.doc.environment.gitCommit ?? "").localeCompare(b.r.doc.environment.gitCommit ?? "") ||
      (a.i - b.i)
    )
    .map((x) => x.r);
}

/** A duration in ns with a unit that keeps 3 significant digits: `812 ns`, `1.23 ms`. */
export function formatNs(ns: number): string {
  if (!Number.isFinite(ns)) return String(ns);
  const a = Math.abs(ns);
  const [div, unit] = a >= 1e9 ? [1e9, "s"] : a >= 1e6 ? [1e6, "ms"] : a >= 1e3 ? [1e3, "µs"] : [
    1,
    "ns",
  ];
  return `${sig3(ns / div)} ${unit}`;
}

/** Decimal byte size (TB as in the paper's Table 17): `1.68 TB`. */
export function formatBytes(n: number): string {
  return formatSi(n, "B");
}

/** A value with an SI prefix: `formatSi(2.5e12, "FLOP/s")` is `2.50 TFLOP/s`. */
export function formatSi(n: number, unit: string): string {
  if (!Number.isFinite(n)) return String(n);
  const prefixes = ["", "k", "M", "G", "T", "P", "E"];
  let p = 0;
  let x = n;
  while (Math.abs(x) >= 1000 && p < prefixes.length - 1) {
    x /= 1000;
    p++;
  }
  return `${p === 0 ? String(Math.round(x * 100) / 100) : x.toFixed(2)} ${prefixes[p]}${unit}`;
}

/** Three significant digits without exponent notation for ordinary magnitudes. */
function sig3(x: number): string {
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
}
