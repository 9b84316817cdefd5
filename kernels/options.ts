/**
 * The parts of a method record (see `MethodRecord` in `method.ts`) that describe what can be
 * chosen: method options ({@linkcode MethodOption}: a name, a default, a doc line, a parser and a
 * check, and the values `tune` tries) and kernel variants ({@linkcode KernelVariant}: the
 * `--kernel` family a variant answers to, its parameters, and the adapter features and storage
 * dtypes it needs). The command line, `tune` and the conformance suite read them from the records;
 * nothing here knows a method.
 *
 * This module imports no method and nothing that imports one, so method modules may use it while
 * they load.
 *
 * @module
 */

import type { Dtype } from "../workloads/shapes.ts";

/** A method option's value: a number, a name, or a group of them (a kernel variant's parameters). */
export type OptionValue = number | string | Readonly<Record<string, number | string>>;

/** Kernel families, as `--kernel` names them (`auto`: the fastest the device offers). */
export const KERNEL_CHOICES = ["auto", "fma", "mma"] as const;

/** A kernel family. */
export type KernelChoice = (typeof KERNEL_CHOICES)[number];

/**
 * A method option: what its planner reads from `MethodOptions[key]`. The value reaches the planner
 * from code, from the command line (`flag`, through {@linkcode MethodOption.parse}) or from a
 * stored tuning, and is checked by {@linkcode MethodOption.read} when the plan is made.
 */
export interface MethodOption<T extends OptionValue = OptionValue> {
  /** Key in `MethodOptions` (`blockSize`). */
  readonly key: string;
  /** Command-line flag with its argument (`--block-size <tokens>`). */
  readonly flag: string;
  /** One line for help texts. */
  readonly doc: string;
  /** Value when none is given. */
  readonly default: T;
  /** Values `tune` tries, the default first; absent: not tuned. */
  readonly tune?: readonly T[];
  /** What a value must be, as a phrase (`an integer >= 1`). */
  readonly want: string;
  /** Whether `value` is a valid value. */
  valid(value: unknown): value is T;
  /** The flag's text as a value; throws `RangeError` naming the flag. */
  parse(text: string): T;
  /** `options[key]` checked (the default when absent); throws `RangeError` naming the option. */
  read(options: Readonly<Record<string, unknown>>): T;
}

/** An integer option of at least `min` (default 1). */
export function intOption(spec: {
  key: string;
  flag: string;
  doc: string;
  default: number;
  min?: number;
  tune?: readonly number[];
}): MethodOption<number> {
  const min = spec.min ?? 1;
  const name = spec.flag.split(" ")[0]!;
  const want = `an integer >= ${min}`;
  const valid = (v: unknown): v is number =>
    typeof v === "number" && Number.isSafeInteger(v) && v >= min;
  return {
    key: spec.key,
    flag: spec.flag,
    doc: spec.doc,
    default: spec.default,
    tune: spec.tune,
    want,
    valid,
    parse(text) {
      const n = Number(text);
      if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) {
        throw new RangeError(`Option ${name} must be ${want}, got ${JSON.stringify(text)}`);
      }
      if (n < min) throw new RangeError(`${name} must be at least ${min}, got ${n}`);
      return n;
    },
    read(options) {
      const v = options[spec.key] ?? spec.default;
      if (!valid(v)) throw new RangeError(`Option ${spec.key} must be ${want}, got ${v}`);
      return v;
    },
  };
}

/** One parameter of a kernel variant (`mma.rows`). */
export interface VariantParam {
  readonly name: string;
  readonly doc: string;
  readonly default: number | string;
  /** Allowed names, for a string parameter; absent: an integer. */
  readonly choices?: readonly string[];
  /** Smallest integer (default 1). */
  readonly min?: number;
  /** Largest integer (default none). */
  readonly max?: number;
}

/** Why `value` is no value of `param`, as a phrase (null: it is one). */
export function badParam(param: VariantParam, value: unknown): string | null {
  if (param.choices) {
    return param.choices.includes(value as string) ? null : `one of ${param.choices.join(", ")}`;
  }
  const min = param.min ?? 1;
  const ok = typeof value === "number" && Number.isSafeInteger(value) && value >= min &&
    (param.max === undefined || value <= param.max);
  if (ok) return null;
  return param.max === undefined
    ? `an integer >= ${min}`
    : `an integer from ${min} to ${param.max}`;
}

/**
 * Why `value` is no option group of `params` (an object of some of its parameters), as a phrase
 * naming what it must be (null: it is one).
 */
export function badParamGroup(params: VariantParams, value: unknown): string | null {
  const ok = typeof value === "object" && value !== null && !Array.isArray(value) &&
    Object.entries(value).every(([k, v]) => {
      const p = params.params.find((x) => x.name === k);
      return p !== undefined && badParam(p, v) === null;
    });
  if (ok) return null;
  const names = params.params.map((p) => p.name);
  const plain = params.params.every((p) => !p.choices && (p.min ?? 1) === 1 && p.max === undefined);
  const list = names.length > 1
    ? `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`
    : names.join("");
  return plain
    ? `an object of positive integer ${list}`
    : `an object of ${
      params.params.map((p) => `${p.name} (${badParam(p, undefined)})`).join(", ")
    }`;
}

/**
 * The parameters of a kernel variant: one option group, `MethodOptions[key]` (`mma: {rows,
 * keys}`). Values are checked by the planner, which knows what fits the shape and the device.
 */
export interface VariantParams {
  /** Key of the option group (`mma`). */
  readonly key: string;
  readonly params: readonly VariantParam[];
  /** Groups `tune` tries when the variant's family is tried, the default first; absent: none. */
  readonly tune?: readonly Readonly<Record<string, number | string>>[];
}

/** Adapter features a kernel variant may need. */
export type AdapterFeature = "shader-f16" | "subgroups" | "subgroup-matrix";

/** One kernel variant of a method: a `--kernel` family with its parameters and needs. */
export interface KernelVariant {
  /** The `--kernel` family it answers to. */
  readonly family: Exclude<KernelChoice, "auto">;
  /** One line for help texts. */
  readonly description: string;
  /** Adapter features it needs (besides `shader-f16` for f16 storage, which every kernel needs). */
  readonly needs: readonly AdapterFeature[];
  /** Storage dtypes it runs (absent: both). */
  readonly dtypes?: readonly Dtype[];
  /** Its parameters, if it has any. */
  readonly params?: VariantParams;
}

/** What a device offers, as far as {@linkcode missingNeeds} asks. */
export interface DeviceOffer {
  /** `shader-f16` granted. */
  readonly f16: boolean;
  /** Subgroup built-ins available. */
  readonly subgroups: boolean;
  /** An f16 x f16 -> f32 subgroup-matrix configuration with a fixed subgroup size. */
  readonly subgroupMatrix: boolean;
}

/**
 * What keeps `variant` from running `dtype` on a device offering `offer`: the missing features
 * and a dtype it does not take, as phrases (empty: it can run).
 */
export function missingNeeds(variant: KernelVariant, offer: DeviceOffer, dtype: Dtype): string[] {
  const out: string[] = [];
  if (variant.dtypes && !variant.dtypes.includes(dtype)) {
    out.push(`${dtype} storage (it takes ${variant.dtypes.join(" or ")})`);
  }
  const has: Record<AdapterFeature, boolean> = {
    "shader-f16": offer.f16,
    subgroups: offer.subgroups,
    "subgroup-matrix": offer.subgroupMatrix,
  };
  if (dtype === "f16" && !offer.f16 && !variant.needs.includes("shader-f16")) {
    out.push("shader-f16");
  }
  for (const f of variant.needs) if (!has[f]) out.push(f);
  return out;
}

/**
 * Parses `--variant` text, `GROUP.PARAM=VALUE` pairs separated by commas (`mma.rows=64,mma.keys=32`),
 * into option groups, checking every group and parameter against `variants`. Throws `RangeError`
 * naming what is unknown or malformed.
 */
export function parseVariantParams(
  text: string,
  variants: readonly KernelVariant[],
): Record<string, Record<string, number | string>> {
  const groups = new Map<string, VariantParams>();
  for (const v of variants) if (v.params) groups.set(v.params.key, v.params);
  const known = () =>
    [...groups.values()].flatMap((g) => g.params.map((p) => `${g.key}.${p.name}`)).join(", ");
  const out: Record<string, Record<string, number | string>> = {};
  const items = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0) {
    throw new RangeError(`--variant needs GROUP.PARAM=VALUE; known: ${known()}`);
  }
  for (const item of items) {
    const m = /^([\w-]+)\.(\w+)=(.+)$/.exec(item);
    if (!m) {
      throw new RangeError(
        `--variant: ${JSON.stringify(item)} must look like GROUP.PARAM=VALUE (e.g. mma.rows=64)`,
      );
    }
    const [, key, name, raw] = m;
    const param = groups.get(key!)?.params.find((p) => p.name === name);
    if (!param) {
      throw new RangeError(`--variant: unknown parameter ${key}.${name}; known: ${known()}`);
    }
    const value = param.choices || !/^-?\d+$/.test(raw!) ? raw! : Number(raw);
    const bad = badParam(param, value);
    if (bad) throw new RangeError(`--variant: ${key}.${name} must be ${bad}, got ${raw}`);
    const group = (out[key!] ??= {});
    if (name! in group) throw new RangeError(`--variant names ${key}.${name} twice`);
    group[name!] = value;
  }
  return out;
}

/**
 * Workgroups a method that splits KV to fill the GPU aims for (`sequence`, `tree-mask`, and
 * `deft-flatten` on matrix units, which halves its blocks to reach it); 0: the method's own
 * default (a few waves of a large GPU).
 */
export const TARGET_WORKGROUPS: MethodOption<number> = intOption({
  key: "targetWorkgroups",
  flag: "--target-workgroups <n>",
  doc:
    "workgroups sequence and tree-mask aim for when they split KV, and deft-flatten when it halves its blocks (without a resident-workgroup count) and splits its Flash-Decoding parts (0: their default)",
  default: 0,
  min: 0,
});

/** What a device offers from its kernel caps and whether it has `shader-f16`. */
export function deviceOffer(
  caps: { readonly subgroups: boolean; readonly matrix: unknown },
  f16: boolean,
): DeviceOffer {
  return { f16, subgroups: caps.subgroups, subgroupMatrix: caps.matrix !== null };
}
