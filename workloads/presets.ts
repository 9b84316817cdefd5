/**
 * Named workloads: the eleven columns of the DeFT paper's tables, and FastTree-style level grids.
 *
 * @module
 */

import { FewShotRun } from "./few_shot.ts";
import { type GridLevel, LevelGridRun } from "./level_grid.ts";
import { ReasoningRun } from "./reasoning.ts";
import type { DecodingRun } from "./run.ts";
import { SpeculativeRun } from "./speculative.ts";

/** A preset: what it reproduces, and how to build it (optionally scaled down). */
export interface Preset {
  /** Preset name, e.g. `few-shot-b20`. */
  readonly name: string;
  /** The paper column (or micro-benchmark) it stands for. */
  readonly description: string;
  /** True for the eleven paper columns. */
  readonly paper: boolean;
  /** Builds the run; `scale` in (0, 1] shrinks token counts and run length. */
  build(seed: number, scale?: number): DecodingRun;
}

const shrink = (v: number, scale: number) => Math.max(1, Math.round(v * scale));

function fewShot(b: number): Preset {
  return {
    name: `few-shot-b${b}`,
    description: `Few-shot prompting, prompt 4000, ${b} branches of 400 generated tokens`,
    paper: true,
    build: (_seed, scale = 1) =>
      new FewShotRun(
        { prompt: shrink(4000, scale), branches: b, generated: shrink(400, scale) },
        `few-shot-b${b}`,
      ),
  };
}

/**
 * Reasoning presets. Prompt lengths and level counts follow the paper's released records
 * (`dataset/generation/*ToT`: sorting 10, document 3, keyword 6 and set 9 thought levels below the
 * root). Thought lengths are uniform ranges around the records' mean thought length (sorting 371,
 * document 997, keyword 78, set 83 tokens), nudged so that the run-average KV IO reduction lands
 * near the paper's Table 17 where the synthetic shape allows it (seed 1: sorting 83.6 % against the
 * paper's 79.3 %, document 74.2 % / 73.4 %, keyword 87.6 % / 87.6 %, set 88.5 % / 85.2 %).
 */
export const REASONING_PRESETS: Readonly<
  Record<string, { prompt: number; depth: number; thoughtMin: number; thoughtMax: number }>
> = {
  sorting: { prompt: 1104, depth: 10, thoughtMin: 200, thoughtMax: 550 },
  document: { prompt: 1250, depth: 3, thoughtMin: 500, thoughtMax: 1000 },
  keyword: { prompt: 1419, depth: 6, thoughtMin: 50, thoughtMax: 100 },
  set: { prompt: 1611, depth: 9, thoughtMin: 40, thoughtMax: 120 },
};

function reasoning(task: keyof typeof REASONING_PRESETS): Preset {
  const p = REASONING_PRESETS[task]!;
  return {
    name: task,
    description:
      `Multi-step reasoning (ToT-BFS) ${task}: prompt ${p.prompt}, ${p.depth} levels of width 10, thoughts ${p.thoughtMin}-${p.thoughtMax} tokens`,
    paper: true,
    build: (seed, scale = 1) =>
      new ReasoningRun(
        {
          prompt: shrink(p.prompt, scale),
          depth: p.depth,
          width: 10,
          thoughtMin: shrink(p.thoughtMin, scale),
          thoughtMax: shrink(p.thoughtMax, scale),
          seed,
        },
        task,
      ),
  };
}

function speculative(t: number): Preset {
  return {
    name: `speculative-t${t}`,
    description:
      `Speculative decoding, Medusa-like token tree of ${t} tokens over a prefix of 1000 growing by the accepted length, 1000 steps`,
    paper: true,
    build: (seed, scale = 1) =>
      new SpeculativeRun(
        {
          prefix: shrink(1000, scale),
          treeTokens: t,
          steps: shrink(1000, scale),
          seed,
          topology: "medusa",
        },
        `speculative-t${t}`,
      ),
  };
}

function grid(name: string, levels: GridLevel[], description: string): Preset {
  return {
    name,
    description,
    paper: false,
    build: (_seed, scale = 1) =>
      new LevelGridRun(
        levels.map((l) => ({ nodes: l.nodes, tokens: shrink(l.tokens, scale) })),
        name,
      ),
  };
}

/** Every preset by name, the eleven paper columns first, in the paper's order. */
export const PRESETS: ReadonlyMap<string, Preset> = new Map(
  [
    fewShot(20),
    fewShot(30),
    fewShot(50),
    reasoning("sorting"),
    reasoning("document"),
    reasoning("keyword"),
    reasoning("set"),
    speculative(32),
    speculative(64),
    speculative(128),
    speculative(256),
    grid(
      "grid-4000-50x200",
      [{ nodes: 1, tokens: 4000 }, { nodes: 50, tokens: 200 }],
      "Level grid: one node of 4000 tokens over 50 nodes of 200 tokens",
    ),
    grid(
      "grid-1024-16x256-64x32",
      [{ nodes: 1, tokens: 1024 }, { nodes: 16, tokens: 256 }, { nodes: 64, tokens: 32 }],
      "Level grid (FastTree): 1x1024, 16x256, 64x32 tokens",
    ),
    grid(
      "grid-binary-16",
      [1, 2, 4, 8, 16, 32, 64, 128, 1024].map((nodes) => ({ nodes, tokens: 16 })),
      "Level grid (FastTree): levels of 1, 2, 4, ..., 128, 1024 nodes of 16 tokens",
    ),
    grid(
      "table14",
      [{ nodes: 1, tokens: 4000 }, { nodes: 64, tokens: 1 }],
      "The paper's Table 14 tree: a 4000-token prompt with 64 one-token queries",
    ),
    grid(
      "unshared-32x4096",
      [{ nodes: 1, tokens: 1 }, { nodes: 32, tokens: 4096 }],
      "Nothing to share: a 1-token root over 32 paths of 4096 tokens, one query on each",
    ),
    // Where tree attention starts to pay: 64 queries, each seeing 4096 tokens (so the sequence
    // methods' work is the same in every tree), over 64 / s shared paths: sharing factor ~s.
    ...[1, 2, 4, 8, 16, 32, 64].map((s) =>
      grid(
        `sharing-${s}`,
        [{ nodes: 1, tokens: 1 }, { nodes: 64 / s, tokens: 4094 }, { nodes: 64, tokens: 1 }],
        `Sharing sweep: 64 one-token queries over ${
          64 / s
        } shared path(s) of 4096 tokens (sharing factor ~${s})`,
      )
    ),
  ].map((p) => [p.name, p]),
);

/** The eleven paper presets, in the paper's column order. */
export const PAPER_PRESETS: readonly string[] = [...PRESETS.values()]
  .filter((p) => p.paper)
  .map((p) => p.name);

/** Looks a preset up; throws `RangeError` listing the known names. */
export function getPreset(name: string): Preset {
  const p = PRESETS.get(name);
  if (!p) {
    throw new RangeError(
      `Unknown workload preset ${JSON.stringify(name)}; known presets: ${
        [...PRESETS.keys()].join(", ")
      }`,
    );
  }
  return p;
}
