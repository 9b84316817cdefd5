/**
 * The method options of `bench`, `run` and `tune`, made from the method records: one flag per
 * option some method reads (`--block-size`, `--chunk-size`, `--target-workgroups`, ...) and
 * `--variant` for the kernel variants' parameters (`mma.rows=64`, `fma.threads=128`,
 * `sequence.blockKeys=128`), with what they parse to. A new method's options and variants reach
 * the command line without an edit here.
 *
 * @module
 */

import { Option } from "../deps/commander.ts";
import type { MethodOptions } from "../kernels/method.ts";
import { METHOD_LIST, METHOD_OPTIONS } from "../kernels/methods/mod.ts";
import { type KernelVariant, parseVariantParams } from "../kernels/options.ts";
import { fromInput } from "./errors.ts";

/** Every kernel variant with parameters, once per parameter group. */
function variantsWithParams(): KernelVariant[] {
  const seen = new Map<string, KernelVariant>();
  for (const m of METHOD_LIST) {
    for (const v of m.variants) if (v.params && !seen.has(v.params.key)) seen.set(v.params.key, v);
  }
  return [...seen.values()];
}

/**
 * One flag per method option. `withDefaults`: commander fills in the default (shown as
 * `(default: 128)`); otherwise an absent flag stays undefined (so a stored tuning may fill it) and
 * the help says `(default 128)`.
 */
export function methodOptionFlags({ withDefaults }: { withDefaults: boolean }): Option[] {
  return METHOD_OPTIONS.map((o) => {
    const parse = (text: string) => fromInput(() => o.parse(text));
    const flag = new Option(o.flag, withDefaults ? o.doc : `${o.doc} (default ${o.default})`)
      .argParser(parse);
    return withDefaults ? flag.default(o.default) : flag;
  });
}

/** `--variant`, listing the parameter groups of every method's kernel variants. */
export function variantOption() {
  const groups = variantsWithParams().map((v) => {
    const p = v.params!;
    const users = METHOD_LIST.filter((m) => m.variants.includes(v)).map((m) => m.name);
    return `${p.key}.{${p.params.map((x) => x.name).join(",")}} (${users.join(", ")}: ${v.family})`;
  });
  return new Option(
    "--variant <params>",
    `kernel variant parameters, GROUP.PARAM=VALUE separated by commas: ${groups.join("; ")}`,
  ).argParser((text: string, previous: Record<string, Record<string, number | string>> = {}) => {
    const parsed = fromInput(() => parseVariantParams(text, variantsWithParams()));
    const out = { ...previous };
    for (const [k, v] of Object.entries(parsed)) out[k] = { ...out[k], ...v };
    return out;
  });
}

/**
 * The method options given on the command line (flags of {@linkcode methodOptionFlags},
 * `--kernel`, `--variant`), nothing else: what overrides a default or a stored tuning.
 */
export function givenOptions(opts: Record<string, unknown>): Partial<MethodOptions> {
  const out: Partial<MethodOptions> = {};
  for (const o of METHOD_OPTIONS) {
    const v = opts[new Option(o.flag).attributeName()];
    if (v !== undefined) out[o.key] = v as number | string;
  }
  if (opts.kernel !== undefined) out.kernel = opts.kernel as MethodOptions["kernel"];
  const groups = opts.variant as Record<string, Record<string, number | string>> | undefined;
  for (const [k, v] of Object.entries(groups ?? {})) out[k] = v;
  return out;
}
