/**
 * The one WGSL specialiser of the kernels: every method's shader is a `.wgsl` file whose `const`
 * and `alias` lines the host rewrites for a shape, dtype and tile ({@linkcode specializeWgsl}), and
 * whose loops marked `// unroll` it can repeat with constant indices ({@linkcode unrollWgsl}).
 * A source that lacks what the host asks to rewrite is a harness bug, never bad input: both throw
 * {@linkcode WgslError} (an internal error, exit 1 on the command line).
 *
 * @module
 */

/** A kernel source does not have the shape its host expects (a lost constant, a broken loop). */
export class WgslError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "WgslError";
  }
}

/**
 * A constant's new value: a number, written as the declared type's literal (`u32`/`i32`:
 * `12u`/`12`; `f32`/`f16`: 12 significant digits), a boolean, or a string taken verbatim as the
 * WGSL expression.
 */
export type WgslValue = number | boolean | string;

/** What {@linkcode specializeWgsl} rewrites. */
export interface WgslSpecialization {
  /** `const NAME: T = ...;` lines to rewrite (each must exist). */
  consts?: Readonly<Record<string, WgslValue>>;
  /** `alias NAME = ...;` lines to point at another type (each must exist). */
  aliases?: Readonly<Record<string, string>>;
  /** Prepend `enable f16;`. */
  f16?: boolean;
  /** The source's name in error messages (e.g. `sequence.wgsl`). */
  name?: string;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function literal(type: string, value: WgslValue): string {
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return `${value}`;
  switch (type) {
    case "u32":
      return `${value}u`;
    case "i32":
      return `${value}`;
    case "bool":
      return `${value !== 0}`;
    default:
      return value.toPrecision(12);
  }
}

/**
 * Specialises a kernel source: rewrites each `const NAME: T = ...;` line named in `consts` and
 * each `alias NAME = ...;` line named in `aliases` (the first at the start of a line; text after
 * the `;`, such as a comment, is kept), and prepends `enable f16;` when asked. Throws
 * {@linkcode WgslError} when the source lacks a constant or an alias, so a renamed one never goes
 * silently unspecialised.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { specializeWgsl } from "./wgsl.ts";
 *
 * const src = "alias ST = f32; // storage\nconst TM: u32 = 4u;\nconst S: f32 = 1.0;\n";
 * assert.equal(
 *   specializeWgsl(src, { consts: { TM: 8, S: 0.5 }, aliases: { ST: "f16" }, f16: true }),
 *   "enable f16;\nalias ST = f16; // storage\nconst TM: u32 = 8u;\nconst S: f32 = 0.500000000000;\n",
 * );
 * ```
 */
export function specializeWgsl(src: string, spec: WgslSpecialization): string {
  const where = spec.name ? `${spec.name} ` : "Kernel source ";
  let out = src;
  for (const [name, value] of Object.entries(spec.consts ?? {})) {
    const re = new RegExp(`^const ${escape(name)}: (u32|i32|f32|f16|bool) = [^;]+;`, "m");
    const m = re.exec(out);
    if (!m) throw new WgslError(`${where}has no constant ${name} to specialise`);
    out = out.replace(re, `const ${name}: ${m[1]} = ${literal(m[1]!, value)};`);
  }
  for (const [name, type] of Object.entries(spec.aliases ?? {})) {
    const re = new RegExp(`^alias ${escape(name)} = [^;]+;`, "m");
    if (!re.test(out)) throw new WgslError(`${where}has no alias ${name} to specialise`);
    out = out.replace(re, `alias ${name} = ${type};`);
  }
  return spec.f16 ? "enable f16;\n" + out : out;
}

const UNROLL_RE = /^(\s*)for \(var (\w+) = 0u; \2 < (\w+); \2\+\+\) \{\s*\/\/ unroll\s*$/;

/**
 * Unrolls every loop written `for (var i = 0u; i < N; i++) { // unroll` (N a literal such as `4u`
 * or a name in `consts`): the body is repeated N times, each copy in its own block that starts
 * with `const i = <k>u;`, so indices built from `i` are constant expressions. Nested loops are
 * unrolled too. The loop's closing brace must be alone on its line, and braces inside the body
 * must balance line by line (no braces in comments). Throws {@linkcode WgslError} for an unknown
 * bound or an unclosed loop.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unrollWgsl } from "./wgsl.ts";
 *
 * const src = "for (var i = 0u; i < N; i++) { // unroll\n  x[i] = 1.0;\n}";
 * assert.equal(
 *   unrollWgsl(src, { N: 2 }),
 *   "{ const i = 0u;\n  x[i] = 1.0;\n}\n{ const i = 1u;\n  x[i] = 1.0;\n}",
 * );
 * ```
 */
export function unrollWgsl(src: string, consts: Readonly<Record<string, number>>): string {
  let lines = src.split("\n");
  for (;;) {
    const at = lines.findIndex((l) => UNROLL_RE.test(l));
    if (at < 0) return lines.join("\n");
    const [, indent, name, bound] = UNROLL_RE.exec(lines[at]!)!;
    const n = /^\d+u?$/.test(bound!) ? parseInt(bound!, 10) : consts[bound!];
    if (n === undefined || !Number.isSafeInteger(n) || n < 0) {
      throw new WgslError(`Cannot unroll a loop bounded by ${bound}: not a known constant`);
    }
    let depth = 1;
    let close = at + 1;
    for (; close < lines.length; close++) {
      const code = lines[close]!.replace(/\/\/.*$/, "");
      for (const ch of code) {
        if (ch === "{") depth++;
        else if (ch === "}") depth--;
      }
      if (depth === 0) break;
    }
    if (close >= lines.length || lines[close]!.trim() !== "}") {
      throw new WgslError(`Unclosed unrolled loop at line ${at + 1}: ${lines[at]!.trim()}`);
    }
    const body = lines.slice(at + 1, close);
    const copies: string[] = [];
    for (let i = 0; i < n; i++) {
      copies.push(`${indent}{ const ${name} = ${i}u;`, ...body, `${indent}}`);
    }
    lines = [...lines.slice(0, at), ...copies, ...lines.slice(close + 1)];
  }
}
