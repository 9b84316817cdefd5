import { assert, assertEquals, assertThrows } from "./_assert.ts";
import {
  flattenTree,
  IndexedTree,
  type Tree,
  TREE_LIMITS,
  TreeError,
  treeFacts,
} from "../workloads/tree.ts";
import { flattenBlocks } from "../kernels/methods/deft_flatten.ts";
import { kvLayout } from "../kernels/layout.ts";
import { propertySeed, randomTree, withSeed } from "./_arbitrary.ts";
import {
  parseRun,
  parseTree,
  parseWorkloadDocument,
  stringifyRun,
  stringifyTree,
} from "../workloads/format.ts";
import { FewShotRun } from "../workloads/few_shot.ts";

const small: Tree = {
  nodes: [
    { id: 5, parent: null, tokens: 100 },
    { id: 2, parent: 5, tokens: 10 },
    { id: 9, parent: 5, tokens: 20 },
    { id: 1, parent: 2, tokens: 3 },
    { id: 4, parent: 2, tokens: 4 },
  ],
  queries: [{ node: 1 }, { node: 4 }, { node: 9 }, { node: 2 }],
};

Deno.test("treeFacts() derives nodes, depth, N_tree, queries, ΣN_i and F_s", () => {
  const f = treeFacts(small);
  assertEquals(f, {
    nodes: 5,
    depth: 3,
    treeTokens: 137,
    queries: 4,
    pathTokens: 113 + 114 + 120 + 110,
    sharingFactor: (113 + 114 + 120 + 110) / 137,
    leaves: 3,
  });
});

Deno.test("IndexedTree gives DFS pre-order with children in node order", () => {
  const ix = new IndexedTree(small);
  const ids = [...ix.dfsOrder].map((v) => small.nodes[v]!.id);
  assertEquals(ids, [5, 2, 1, 4, 9]);
  assertEquals(ix.queryPath(1).map((v) => small.nodes[v]!.id), [5, 2, 4]);
  assertEquals(ix.queriesByNode(), [[0, 1, 2, 3], [0, 1, 3], [2], [0], [1]]);
});

Deno.test("a tree without queries has F_s 0", () => {
  assertEquals(
    treeFacts({ nodes: [{ id: 0, parent: null, tokens: 5 }], queries: [] }).sharingFactor,
    0,
  );
});

const bad = (nodes: unknown[], queries: unknown[] = []) =>
  JSON.stringify({ format: "deft-bench/tree", version: 1, nodes, queries });

Deno.test("parseTree() rejects malformed trees with the field and the node named", () => {
  const cases: [string, RegExp][] = [
    ["{", /Not valid JSON/],
    [JSON.stringify({ format: "other", version: 1 }), /format must be "deft-bench\/tree"/],
    [JSON.stringify({ format: "deft-bench/tree", version: 7, nodes: [] }), /version 7/],
    [bad([]), /no nodes/],
    [
      bad([{ id: 0, parent: null, tokens: 1 }, { id: 0, parent: 0, tokens: 1 }]),
      /nodes\[1\]\.id 0 is a duplicate: nodes\[0\]/,
    ],
    [
      bad([{ id: 0, parent: null, tokens: 1 }, { id: 1, parent: 7, tokens: 1 }]),
      /nodes\[1\]\.parent 7 is an unknown node id \(node 1\)/,
    ],
    [
      bad([{ id: 0, parent: null, tokens: 1 }, { id: 1, parent: null, tokens: 1 }]),
      /several roots: node 0 and node 1/,
    ],
    [bad([{ id: 0, parent: 1, tokens: 1 }, { id: 1, parent: 0, tokens: 1 }]), /no root/],
    [
      bad([{ id: 0, parent: null, tokens: 1 }, { id: 1, parent: 2, tokens: 1 }, {
        id: 2,
        parent: 1,
        tokens: 1,
      }]),
      /cycle: node 1 cannot be reached/,
    ],
    [bad([{ id: 0, parent: null, tokens: 1 }, { id: 3, parent: 3, tokens: 1 }]), /own parent/],
    [
      bad([{ id: 0, parent: null, tokens: 0 }]),
      /nodes\[0\]\.tokens must be a positive integer, got 0 \(node 0\)/,
    ],
    [bad([{ id: 0, parent: null, tokens: -4 }]), /got -4/],
    [bad([{ id: 0, parent: null, tokens: 2.5 }]), /got 2\.5/],
    [bad([{ id: 0, parent: null, tokens: "7" }]), /tokens must be a number, got "7"/],
    [bad([{ id: -1, parent: null, tokens: 1 }]), /nodes\[0\]\.id must be a non-negative integer/],
    [bad([{ id: 0, tokens: 1 }]), /nodes\[0\]\.parent must be a node id or null/],
    [bad([{ id: 0, parent: null, tokens: 1, extra: 1 }]), /unknown field "extra"/],
    [
      bad([{ id: 0, parent: null, tokens: 1 }], [{ node: 3 }]),
      /queries\[0\]\.node 3 is an unknown node id/,
    ],
    [bad([{ id: 0, parent: null, tokens: 1 }], [{ nod: 0 }]), /queries\[0\] must be/],
    [
      bad([{ id: 0, parent: null, tokens: TREE_LIMITS.maxTokensPerNode + 1 }]),
      /more than the limit/,
    ],
    [
      bad(
        [{ id: 0, parent: null, tokens: 1 }],
        Array.from({ length: TREE_LIMITS.maxQueries + 1 }, () => ({ node: 0 })),
      ),
      /queries, more than the limit of 65536/,
    ],
  ];
  for (const [text, re] of cases) assertThrows(() => parseTree(text), TreeError, re);
});

Deno.test("tree documents round-trip byte for byte", () => {
  const text = stringifyTree(small);
  assertEquals(parseTree(text), small);
  assertEquals(stringifyTree(parseTree(text)), text);
});

Deno.test("run documents round-trip and their weights must sum to the iterations", () => {
  const run = new FewShotRun({ prompt: 10, branches: 3, generated: 9 });
  const text = stringifyRun(run.toDocument(4));
  const doc = parseRun(text);
  assertEquals(doc.snapshots.map((s) => s.weight), [2, 2, 2, 3]);
  assertEquals(stringifyRun(doc), text);
  const broken = JSON.parse(text);
  broken.snapshots[0].weight = 5;
  assertThrows(
    () => parseRun(JSON.stringify(broken)),
    TreeError,
    /weights sum to 12, but the run has 9/,
  );
  broken.snapshots[0].weight = 2;
  broken.snapshots[1].tree.nodes[0].tokens = 0;
  assertThrows(
    () => parseRun(JSON.stringify(broken)),
    TreeError,
    /snapshots\[1\]\.tree: nodes\[0\]\.tokens/,
  );
  broken.snapshots[1].tree.nodes[0].tokens = 10;
  broken.snapshots[2].iteration = 9;
  assertThrows(
    () => parseRun(JSON.stringify(broken)),
    TreeError,
    /snapshots\[2\]\.iteration must be an integer in \[0, 8\]/,
  );
});

Deno.test("parseWorkloadDocument() accepts both kinds and names unknown formats", () => {
  const doc = parseWorkloadDocument(stringifyTree(small), "mine");
  assertEquals(doc.workload.kind, "file");
  assertEquals(doc.snapshots.length, 1);
  assertThrows(() => parseWorkloadDocument("[1]"), TreeError, /Unknown document/);
});

Deno.test("IndexedTree handles a long chain without recursion", () => {
  const n = 200_000;
  const nodes = Array.from(
    { length: n },
    (_, i) => ({ id: i, parent: i === 0 ? null : i - 1, tokens: 1 }),
  );
  const ix = new IndexedTree({ nodes, queries: [{ node: n - 1 }] });
  assertEquals(ix.depth[n - 1], n);
  assert(ix.pathTokens[n - 1] === n);
});

Deno.test("flattenTree() cuts the DFS-flattened KV into equal blocks and counts queries per block", () => {
  // root(100) -> a(50) -> a1(30); root -> b(40). Queries on a1, a1, b.
  const tree: Tree = {
    nodes: [
      { id: 0, parent: null, tokens: 100 },
      { id: 1, parent: 0, tokens: 50 },
      { id: 2, parent: 0, tokens: 40 },
      { id: 3, parent: 1, tokens: 30 },
    ],
    queries: [{ node: 3 }, { node: 3 }, { node: 2 }],
  };
  const f = flattenTree(tree, 64);
  assertEquals(f.order, [0, 1, 3, 2]); // DFS: root, a, a1, b
  assertEquals(f.offset, [0, 100, 180, 150]);
  assertEquals(f.totalTokens, 220);
  assertEquals(f.blocks, 4);
  // Block 0 [0,64): root only -> 3 queries; block 1 [64,128): root+a -> 3; block 2 [128,192):
  // a, a1, b -> 3; block 3 [192,220): b -> 1.
  assertEquals(f.blockQueries, [3, 3, 3, 1]);
  assertThrows(() => flattenTree(tree, 0), RangeError);
  assertThrows(() => flattenTree(tree, 1.5), RangeError);
});

Deno.test("flattenTree() agrees with a brute-force count and with DeFT-Flatten's planner on random trees", async () => {
  await withSeed(propertySeed(), (rng) => {
    for (let i = 0; i < 200; i++) {
      const ix = new IndexedTree(randomTree(rng, 40, { huge: false }));
      const blockSize = [1, 7, 32, 128, 1000][rng.int(0, 4)]!;
      const f = flattenTree(ix, blockSize);
      // Brute force: a query sees a block when a node on its path has a token in it.
      const brute = new Array<number>(f.blocks).fill(0);
      for (let b = 0; b < f.blocks; b++) {
        const [t0, t1] = [b * blockSize, Math.min(f.totalTokens, (b + 1) * blockSize)];
        for (let q = 0; q < ix.queryCount; q++) {
          const sees = ix.queryPath(q).some((v) =>
            f.offset[v]! < t1 && f.offset[v]! + ix.tokens(v) > t0
          );
          if (sees) brute[b]!++;
        }
      }
      assertEquals(f.blockQueries, brute);
      // The kernel's blocks: the same count, tokens and query union per block.
      const { groups } = flattenBlocks(ix, kvLayout(ix, "shuffled", i), blockSize);
      assertEquals(groups.count, f.blocks);
      for (let b = 0; b < f.blocks; b++) {
        assertEquals(groups.tokens[b], Math.min(blockSize, f.totalTokens - b * blockSize));
        assertEquals(groups.queryOffset[b + 1]! - groups.queryOffset[b]!, f.blockQueries[b]);
      }
    }
  });
});
