import {
  DEFAULT_METHOD_OPTIONS,
  dramFloorBytes,
  visibleTokens,
  zeroPlanCounts,
} from "../kernels/method.ts";
import { kvLayout } from "../kernels/layout.ts";
import { METHODS } from "../kernels/methods/mod.ts";
import { parseResults } from "../results/document.ts";
import {
  cacheBytesPerS,
  estimateDramBytes,
  roofline,
  ROOFLINE_MODEL,
  upgradeRooflines,
} from "../results/roofline.ts";
import type { Calibration, ResultsDocument } from "../results/schema.ts";
import { getPreset } from "../workloads/presets.ts";
import type { ModelShape } from "../workloads/shapes.ts";
import { IndexedTree, type Tree, treeFacts } from "../workloads/tree.ts";
import { makeRun } from "./_results_fixture.ts";
import { assert, assertEquals } from "./_assert.ts";

const SHAPE: ModelShape = { name: "t", qHeads: 8, kvHeads: 2, headDim: 64, layers: 1 };

const CAL: Calibration = {
  adapterKey: "t",
  measuredAt: "2025-01-01T00:00:00.000Z",
  readBandwidth: [{ bytes: 1 << 30, bytesPerS: 4e12 }],
  peakReadBytesPerS: 4e12,
  l2ReadBandwidth: [{ bytes: 4 << 20, bytesPerS: 10e12 }],
  l2ReadBytesPerS: 10e12,
  f32FlopsPerS: 50e12,
  f16FlopsPerS: 60e12,
  dispatchNs: 4000,
  extraDispatchNs: 200,
};

/** A root of 1000 tokens, 8 branches of 50 with a query each, and a dead branch of 300. */
function sharedTree(): Tree {
  const nodes: Tree["nodes"][number][] = [{ id: 0, parent: null, tokens: 1000 }];
  const queries: Tree["queries"][number][] = [];
  for (let i = 1; i <= 8; i++) {
    nodes.push({ id: i, parent: 0, tokens: 50 });
    queries.push({ node: i });
  }
  nodes.push({ id: 99, parent: 0, tokens: 300 }); // no query sees it
  return { nodes, queries };
}

Deno.test("visibleTokens() counts each token on some query's path once", () => {
  const ix = new IndexedTree(sharedTree());
  assertEquals(visibleTokens(ix), 1000 + 8 * 50);
  const f = treeFacts(ix);
  assertEquals(f.treeTokens, 1000 + 8 * 50 + 300);
  const b = 2; // f16
  assertEquals(
    dramFloorBytes({ ix, shape: SHAPE, dtype: "f16" }),
    2 * 1400 * 2 * 64 * b + 8 * 8 * 64 * b + 8 * 8 * 64 * 4,
  );
});

Deno.test("every method's dramBytes: the visible KV once, never more than its real bytes", () => {
  const trees: Tree[] = [
    sharedTree(),
    getPreset("few-shot-b20").build(1, 0.02).sample(1)[0]!.tree,
    getPreset("speculative-t32").build(1, 0.02).sample(1)[0]!.tree,
  ];
  for (const tree of trees) {
    const ix = new IndexedTree(tree);
    const layout = kvLayout(ix);
    for (const dtype of ["f16", "f32"] as const) {
      const input = { ix, layout, shape: SHAPE, dtype, options: { ...DEFAULT_METHOD_OPTIONS } };
      const visible = dramFloorBytes(input);
      for (const [name, m] of METHODS) {
        const c = m.plan(input).counts;
        const what = `${name} ${dtype} (${ix.nodeCount} nodes)`;
        // Every method reads at least the visible KV, Q and the output; tree-mask also the whole
        // tree (dead branches included) and its mask.
        if (name === "tree-mask") assert(c.dramBytes > visible, what);
        else assertEquals(c.dramBytes, visible, what);
        assert(c.dramBytes <= c.real.totalBytes, `${what}: ${c.dramBytes} > ${c.real.totalBytes}`);
      }
      // The sequence method re-reads the shared prefix per query: its real KV is many times the
      // bytes that must come from DRAM (the roofline counts the re-reads against L2).
      const seq = METHODS.get("sequence")!.plan(input).counts;
      assert(seq.real.kvBytes > 4 * seq.dramBytes, "sequence re-reads the prefix");
    }
  }
});

Deno.test("roofline() takes the largest of the DRAM, L2 and compute floors, unclamped", () => {
  // A sequence-like case: 1 GB moved, 60 MB unique, few FLOPs, measured at 150 us.
  const counts = zeroPlanCounts({ real: { totalBytes: 1e9 }, dramBytes: 60e6, flops: 1e8 });
  const r = roofline(counts, 150e3, "f16", CAL)!;
  assertEquals(r.model, ROOFLINE_MODEL);
  assertEquals(r.dramTimeNs, 15e3); // 60 MB at 4 TB/s
  assertEquals(r.l2TimeNs, 100e3); // 1 GB at 10 TB/s
  assertEquals(r.flopTimeNs, (1e8 / 60e12) * 1e9);
  assertEquals(r.bound, "l2");
  assertEquals(r.fraction, 100e3 / 150e3);
  assertEquals(r.ioTimeNs, 100e3);
  // The old model would have put it at 1 GB / 4 TB/s = 250 us: 167 % of the DRAM roof.
  assert((1e9 / 4e12) * 1e9 / 150e3 > 1.6);
  // Faster than the L2 floor: the fraction says so (above 1), it is not clamped.
  assertEquals(roofline(counts, 50e3, "f16", CAL)!.fraction, 2);
  // Without an L2 roof the DRAM floor binds; a cache slower than DRAM is taken at DRAM speed.
  const noL2 = { ...CAL, l2ReadBytesPerS: null };
  assertEquals(roofline(counts, 150e3, "f16", noL2)!.bound, "dram");
  assertEquals(roofline(counts, 150e3, "f16", noL2)!.l2TimeNs, null);
  assertEquals(cacheBytesPerS({ ...CAL, l2ReadBytesPerS: 1e12 }), 4e12);
  const compute = roofline({ ...counts, flops: 1e13 }, 200e3, "f32", CAL)!;
  assertEquals(compute.bound, "compute");
  assertEquals(compute.fraction, (1e13 / 50e12) * 1e9 / 200e3);
});

Deno.test("the committed H200 runs parse, and no case is above 100 % of any roof", async () => {
  for (const dir of ["nvidia-h200", "nvidia-h200-first-look"]) {
    const path = `${import.meta.dirname}/../results/data/${dir}/results.json`;
    const text = await Deno.readTextFile(path);
    // Before: the old model put sequence cases above 100 % (113 % on speculative-t128).
    const raw = JSON.parse(text) as ResultsDocument;
    const rawMax = Math.max(
      ...raw.workloads.flatMap((w) =>
        w.snapshots.flatMap((s) => s.cases.map((c) => c.roofline?.fraction ?? 0))
      ),
    );
    if (dir === "nvidia-h200") assert(rawMax > 1.1, `raw max ${rawMax}`);
    const doc = parseResults(text, path);
    let cases = 0;
    for (const w of doc.workloads) {
      for (const s of w.snapshots) {
        for (const c of s.cases) {
          if (!c.roofline) continue;
          cases++;
          assertEquals(c.roofline.model, ROOFLINE_MODEL);
          assertEquals(c.counts.dramBytes, estimateDramBytes(s.facts, doc.settings.shape, "f16"));
          assert(c.roofline.fraction <= 1, `${c.key}: ${c.roofline.fraction}`);
          assert(c.roofline.fraction > 0);
        }
      }
    }
    assert(cases > 100);
    assertEquals(doc.warnings.filter((w) => w.code === "roofline-recomputed").length, 1);
    // Upgrading is done once: the document round-trips unchanged.
    const again = parseResults(JSON.stringify(doc), path);
    assertEquals(again, doc);
    assertEquals(upgradeRooflines(again), 0);
  }
});

Deno.test("a current document is not upgraded and round-trips unchanged", () => {
  const doc = makeRun();
  const parsed = parseResults(JSON.stringify(doc), "x.json");
  assertEquals(parsed, doc);
  assert(parsed.warnings.every((w) => w.code !== "roofline-recomputed"));
  for (const w of parsed.workloads) {
    for (const s of w.snapshots) {
      for (const c of s.cases) {
        assertEquals(c.roofline!.model, ROOFLINE_MODEL);
        assert(c.roofline!.fraction <= 1);
      }
    }
  }
});
