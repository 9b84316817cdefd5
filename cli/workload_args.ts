/**
 * Turning command-line workload arguments into decoding runs: a preset name (`few-shot-b20`), a
 * generator kind with options (`few-shot --prompt 1000 --branches 8`), or a JSON file (a tree or a
 * run document).
 *
 * @module
 */

import { Option } from "../deps/commander.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { parseWorkloadDocument } from "../workloads/format.ts";
import { LevelGridRun, parseGridSpec } from "../workloads/level_grid.ts";
import { getPreset, PRESETS } from "../workloads/presets.ts";
import { ReasoningRun } from "../workloads/reasoning.ts";
import { type DecodingRun, RenamedRun, StoredRun } from "../workloads/run.ts";
import { SpeculativeRun, type TokenTreeTopology } from "../workloads/speculative.ts";
import { TreeError } from "../workloads/tree.ts";
import { resolveShape } from "../workloads/shapes.ts";
import { fromInput, UsageError } from "./errors.ts";

/** Generator kinds accepted in place of a preset name. */
export const GENERATOR_KINDS = ["few-shot", "reasoning", "speculative", "grid"] as const;

/** Generator options, all optional; a kind uses the ones it needs. */
export interface GeneratorOptions {
  seed?: number;
  scale?: number;
  prompt?: number;
  branches?: number;
  generated?: number;
  depth?: number;
  width?: number;
  thoughtMin?: number;
  thoughtMax?: number;
  prefix?: number;
  treeTokens?: number;
  steps?: number;
  topology?: string;
  levels?: string;
}

/** Parses a non-negative integer option value. */
export function intArg(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
      throw new UsageError(
        `Option ${name} must be a non-negative integer, got ${JSON.stringify(value)}`,
      );
    }
    return n;
  };
}

/** Parses a number in (0, 1]. */
export function scaleArg(value: string): number {
  const n = Number(value);
  if (!(n > 0 && n <= 1)) {
    throw new UsageError(`Option --scale must be a number in (0, 1], got ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * Parses `--shape`: a preset name or `Q/KV/D[/LAYERS]`, checked here so that a bad shape is a
 * {@linkcode UsageError}; returns the text as given (commands resolve it with `resolveShape`).
 */
export function shapeArg(value: string): string {
  fromInput(() => resolveShape(value));
  return value;
}

/** The generator options as commander options (added to gen, inspect, bench, run). */
export function generatorOptions(): Option[] {
  const int = (flags: string, desc: string) =>
    new Option(flags, desc).argParser(intArg(flags.split(" ")[0]!));
  return [
    int("--prompt <tokens>", "few-shot/reasoning: prompt tokens"),
    int("--branches <n>", "few-shot: branches"),
    int("--generated <tokens>", "few-shot: tokens generated per branch"),
    int("--depth <levels>", "reasoning: thought levels"),
    int("--width <n>", "reasoning: thoughts per expansion"),
    int("--thought-min <tokens>", "reasoning: shortest thought"),
    int("--thought-max <tokens>", "reasoning: longest thought"),
    int("--prefix <tokens>", "speculative: prefix tokens at the first step"),
    int("--tree-tokens <n>", "speculative: tokens in the token tree"),
    int("--steps <n>", "speculative: decoding steps"),
    new Option("--topology <kind>", "speculative: token-tree topology").choices([
      "medusa",
      "flat",
    ]),
    new Option("--levels <spec>", "grid: levels as NODESxTOKENS,... e.g. 1x4000,50x200"),
  ];
}

function need(v: number | undefined, name: string, kind: string): number {
  if (v === undefined) throw new UsageError(`Workload ${kind} needs ${name}`);
  return v;
}

/** Does `spec` look like a file path rather than a name? */
function isPath(spec: string): boolean {
  return spec.endsWith(".json") || spec.includes("/");
}

/**
 * Resolves one workload argument into a run. Throws {@linkcode UsageError} (or `TreeError` for a
 * malformed file) with a message naming the problem.
 */
export async function resolveWorkload(
  spec: string,
  o: GeneratorOptions = {},
): Promise<DecodingRun> {
  const seed = o.seed ?? 1;
  try {
    if (isPath(spec)) {
      let text: string;
      try {
        text = await Deno.readTextFile(spec);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) throw new UsageError(`File ${spec} does not exist`);
        throw new UsageError(`Cannot read ${spec}: ${(e as Error).message}`);
      }
      try {
        const name = spec.replace(/^.*\//, "").replace(/\.json$/, "");
        return new StoredRun(parseWorkloadDocument(text, name));
      } catch (e) {
        if (e instanceof TreeError) throw new TreeError(`${spec}: ${e.message}`);
        throw e;
      }
    }
    if (PRESETS.has(spec)) return getPreset(spec).build(seed, o.scale ?? 1);
    switch (spec) {
      case "few-shot":
        return new FewShotRun(
          {
            prompt: need(o.prompt, "--prompt", spec),
            branches: need(o.branches, "--branches", spec),
            generated: need(o.generated, "--generated", spec),
          },
          `few-shot-p${o.prompt}-b${o.branches}-g${o.generated}`,
        );
      case "reasoning":
        return new ReasoningRun(
          {
            prompt: need(o.prompt, "--prompt", spec),
            depth: need(o.depth, "--depth", spec),
            width: o.width ?? 10,
            thoughtMin: need(o.thoughtMin, "--thought-min", spec),
            thoughtMax: need(o.thoughtMax, "--thought-max", spec),
            seed,
          },
          `reasoning-p${o.prompt}-d${o.depth}-w${o.width ?? 10}-t${o.thoughtMin}-${o.thoughtMax}`,
        );
      case "speculative":
        return new SpeculativeRun(
          {
            prefix: need(o.prefix, "--prefix", spec),
            treeTokens: need(o.treeTokens, "--tree-tokens", spec),
            steps: o.steps ?? 1000,
            seed,
            topology: (o.topology ?? "medusa") as TokenTreeTopology,
          },
          `speculative-p${o.prefix}-t${o.treeTokens}${o.topology === "flat" ? "-flat" : ""}`,
        );
      case "grid": {
        if (!o.levels) throw new UsageError("Workload grid needs --levels, e.g. 1x4000,50x200");
        return new LevelGridRun(parseGridSpec(o.levels), `grid-${o.levels}`);
      }
    }
    throw new UsageError(
      `Unknown workload ${JSON.stringify(spec)}: give a preset (${
        [...PRESETS.keys()].join(", ")
      }), a generator (${GENERATOR_KINDS.join(", ")}) with its options, or a .json file`,
    );
  } catch (e) {
    // Every size and name here came from the user: a generator's RangeError is bad input.
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
}

/** Generator options a sweep may vary, by their command-line name. */
const SWEEPABLE: Readonly<Record<string, keyof GeneratorOptions>> = {
  prompt: "prompt",
  branches: "branches",
  generated: "generated",
  depth: "depth",
  width: "width",
  "thought-min": "thoughtMin",
  "thought-max": "thoughtMax",
  prefix: "prefix",
  "tree-tokens": "treeTokens",
  steps: "steps",
};

/** The options each generator kind reads, by their command-line name (what a sweep may vary). */
const KIND_PARAMETERS: Readonly<Record<string, readonly string[]>> = {
  "few-shot": ["prompt", "branches", "generated"],
  reasoning: ["prompt", "depth", "width", "thought-min", "thought-max"],
  speculative: ["prefix", "tree-tokens", "steps"],
};

/** A parsed `--sweep PARAM=V1,V2,...`. */
export interface Sweep {
  /** The parameter as written on the command line (e.g. `prefix`). */
  parameter: string;
  key: keyof GeneratorOptions;
  values: number[];
}

/** Parses `--sweep prefix=1000,4000,8000`; throws {@linkcode UsageError} naming the problem. */
export function parseSweep(spec: string): Sweep {
  const m = /^([a-z-]+)=([0-9, ]+)$/.exec(spec.trim());
  if (!m) {
    throw new UsageError(
      `--sweep must look like PARAM=V1,V2,... (e.g. prefix=1000,4000), got ${JSON.stringify(spec)}`,
    );
  }
  const key = SWEEPABLE[m[1]!];
  if (!key) {
    throw new UsageError(
      `--sweep cannot vary ${JSON.stringify(m[1])}; it can vary ${
        Object.keys(SWEEPABLE).join(", ")
      }`,
    );
  }
  const values = m[2]!.split(",").map((v) => v.trim()).filter((v) => v !== "").map(Number);
  if (values.length === 0 || values.some((v) => !Number.isSafeInteger(v))) {
    throw new UsageError(`--sweep values must be integers, got ${JSON.stringify(m[2])}`);
  }
  if (new Set(values).size !== values.length) {
    throw new UsageError(`--sweep values must differ, got ${JSON.stringify(m[2])}`);
  }
  return { parameter: m[1]!, key, values };
}

/**
 * The runs of a workload argument, one per sweep value (or just one without a sweep). A sweep
 * varies a generator option, so it needs a generator kind, not a preset or a file.
 */
export async function resolveWorkloads(
  spec: string,
  o: GeneratorOptions,
  sweep: Sweep | null,
): Promise<{ run: DecodingRun; sweep: { parameter: string; value: number } | null }[]> {
  if (!sweep) return [{ run: await resolveWorkload(spec, o), sweep: null }];
  if (!(GENERATOR_KINDS as readonly string[]).includes(spec) || spec === "grid") {
    throw new UsageError(
      `--sweep varies a generator option, so ${
        JSON.stringify(spec)
      } must be few-shot, reasoning or speculative (with its options)`,
    );
  }
  const used = KIND_PARAMETERS[spec] ?? [];
  if (!used.includes(sweep.parameter)) {
    throw new UsageError(
      `--sweep ${sweep.parameter} does not change a ${spec} workload; ${spec} reads ${
        used.join(", ")
      }`,
    );
  }
  const out = [];
  for (const value of sweep.values) {
    out.push({
      run: await resolveWorkload(spec, { ...o, [sweep.key]: value }),
      sweep: { parameter: sweep.parameter, value },
    });
  }
  // Names must tell the runs apart (they key the cases): add the swept value where they do not.
  if (new Set(out.map((r) => r.run.info.name)).size < out.length) {
    for (const r of out) {
      r.run = new RenamedRun(r.run, `${r.run.info.name}-${sweep.parameter}${r.sweep.value}`);
    }
  }
  return out;
}

/**
 * Gives every workload of a bench a distinct name (case keys are `name@iteration/method`): a
 * name met again (the same preset twice, two files with one base name) gets `-2`, `-3`, ... in
 * argument order. Returns the workloads and a note per renamed one.
 */
export function uniqueNames<W extends { run: DecodingRun }>(
  workloads: readonly { spec: string; items: readonly W[] }[],
): { workloads: W[]; notes: string[] } {
  const taken = new Set(workloads.flatMap((w) => w.items.map((i) => i.run.info.name)));
  const seen = new Set<string>();
  const notes: string[] = [];
  const out: W[] = [];
  for (const { spec, items } of workloads) {
    for (const item of items) {
      const name = item.run.info.name;
      if (!seen.has(name)) {
        seen.add(name);
        out.push(item);
        continue;
      }
      let k = 2;
      while (taken.has(`${name}-${k}`)) k++;
      const renamed = `${name}-${k}`;
      taken.add(renamed);
      seen.add(renamed);
      notes.push(
        `workload ${JSON.stringify(name)} is given more than once; ${spec} is recorded as ${
          JSON.stringify(renamed)
        }`,
      );
      out.push({ ...item, run: new RenamedRun(item.run, renamed) });
    }
  }
  return { workloads: out, notes };
}

/**
 * Refuses a run with a snapshot that has no queries: attention with no query computes nothing, so
 * it is bad input (exit 2), caught before any GPU work. Generators always place queries; stored
 * runs (files) are checked snapshot by snapshot.
 */
export function requireQueries(run: DecodingRun, spec: string): void {
  if (!(run instanceof StoredRun)) return;
  for (const s of run.snapshots()) {
    if (s.tree.queries.length === 0) {
      throw new UsageError(
        `${spec}: ${
          run.iterations > 1 ? `the snapshot at iteration ${s.iteration}` : "the tree"
        } has no queries; attention needs at least one query (add {"node": <id>} to queries)`,
      );
    }
  }
}
