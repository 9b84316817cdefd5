/**
 * Model shapes (attention heads and head size) and storage dtypes.
 *
 * @module
 */

/** Storage dtype of Q, K and V. Outputs and accumulation are always f32. */
export type Dtype = "f16" | "f32";

/** The attention shape of one model layer. */
export interface ModelShape {
  /** Preset name or "custom". */
  readonly name: string;
  /** Query heads. */
  readonly qHeads: number;
  /** KV heads; query head h reads KV head floor(h / (qHeads / kvHeads)) (GQA). */
  readonly kvHeads: number;
  /** Head dimension d. */
  readonly headDim: number;
  /** Decoder layers, used only to scale per-layer numbers to a whole model. */
  readonly layers: number;
}

/** The model shapes of the DeFT paper (head counts from the model cards). */
export const MODEL_SHAPES: Readonly<Record<string, ModelShape>> = {
  "llama3-8b": { name: "llama3-8b", qHeads: 32, kvHeads: 8, headDim: 128, layers: 32 },
  "codellama-7b": { name: "codellama-7b", qHeads: 32, kvHeads: 32, headDim: 128, layers: 32 },
  "codellama-34b": { name: "codellama-34b", qHeads: 64, kvHeads: 8, headDim: 128, layers: 48 },
};

/** Head dimensions the kernels support (multiples of 4 up to 256). */
export const MAX_HEAD_DIM = 256;

/** Checks a shape and returns it; throws `RangeError` naming the bad field. */
export function checkShape(shape: ModelShape): ModelShape {
  const { qHeads, kvHeads, headDim, layers } = shape;
  for (
    const [k, v] of [["qHeads", qHeads], ["kvHeads", kvHeads], ["headDim", headDim], [
      "layers",
      layers,
    ]] as const
  ) {
    if (!Number.isSafeInteger(v) || v <= 0) {
      throw new RangeError(`Model shape ${k} must be a positive integer, got ${v}`);
    }
  }
  if (qHeads % kvHeads !== 0) {
    throw new RangeError(
      `Model shape qHeads (${qHeads}) must be a multiple of kvHeads (${kvHeads})`,
    );
  }
  if (headDim % 4 !== 0 || headDim > MAX_HEAD_DIM) {
    throw new RangeError(
      `Model shape headDim must be a multiple of 4 and at most ${MAX_HEAD_DIM}, got ${headDim}`,
    );
  }
  if (qHeads > 256) throw new RangeError(`Model shape qHeads must be at most 256, got ${qHeads}`);
  return shape;
}

/** Query heads per KV head (the GQA group size). */
export function groupSize(shape: ModelShape): number {
  return shape.qHeads / shape.kvHeads;
}

/** Bytes per stored element of a dtype. */
export function dtypeBytes(dtype: Dtype): number {
  return dtype === "f16" ? 2 : 4;
}

/**
 * Resolves a preset name or a custom spec `Q/KV/D` (e.g. `32/8/128`, optionally `/L` layers).
 * Throws `RangeError` with the list of presets for an unknown name.
 */
export function resolveShape(spec: string): ModelShape {
  const preset = MODEL_SHAPES[spec];
  if (preset) return preset;
  const m = /^(\d+)\/(\d+)\/(\d+)(?:\/(\d+))?$/.exec(spec);
  if (!m) {
    throw new RangeError(
      `Unknown model shape ${JSON.stringify(spec)}: use one of ${
        Object.keys(MODEL_SHAPES).join(", ")
      } or QHEADS/KVHEADS/HEADDIM[/LAYERS]`,
    );
  }
  return checkShape({
    name: "custom",
    qHeads: Number(m[1]),
    kvHeads: Number(m[2]),
    headDim: Number(m[3]),
    layers: m[4] ? Number(m[4]) : 32,
  });
}
