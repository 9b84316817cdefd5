/**
 * Lists the shared libraries (DT_NEEDED sonames) that some ELF files need, transitively, and that do
 * not resolve inside the given library folders; `.ci/lavapipe.sh` uses it to find which Debian
 * packages a private lavapipe still lacks. (`ld.so --list` stops at the first missing library, and
 * readelf is not on every CI machine.) Only 64-bit little-endian ELF, the only kind it meets.
 *
 *   deno run --allow-read .ci/elf_needed.ts --lib-dir DIR [--lib-dir DIR...] FILE...
 *
 * Prints one missing soname a line (nothing when all resolve); exit 2 on bad input.
 *
 * @module
 */

const PT_LOAD = 1, PT_DYNAMIC = 2, DT_NULL = 0n, DT_NEEDED = 1n, DT_STRTAB = 5n;

function readAt(file: Deno.FsFile, offset: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = file.readSync(buf.subarray(done));
    if (n === null) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/** The DT_NEEDED sonames of one ELF file. */
export function neededOf(path: string): string[] {
  using file = Deno.openSync(path);
  const head = readAt(file, 0, 64);
  const h = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < 64 || h.getUint32(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) {
    throw new TypeError(`'${path}' is not a 64-bit little-endian ELF file`);
  }
  const phoff = Number(h.getBigUint64(0x20, true));
  const phentsize = h.getUint16(0x36, true), phnum = h.getUint16(0x38, true);
  const ph = readAt(file, phoff, phentsize * phnum);
  const p = new DataView(ph.buffer, ph.byteOffset, ph.byteLength);
  const loads: { vaddr: number; offset: number; size: number }[] = [];
  let dyn: { offset: number; size: number } | null = null;
  for (let i = 0; i < phnum; i++) {
    const o = i * phentsize, type = p.getUint32(o, true);
    const offset = Number(p.getBigUint64(o + 8, true)),
      vaddr = Number(p.getBigUint64(o + 16, true));
    const size = Number(p.getBigUint64(o + 32, true));
    if (type === PT_LOAD) loads.push({ vaddr, offset, size });
    if (type === PT_DYNAMIC) dyn = { offset, size };
  }
  if (dyn === null) return []; // statically linked
  const d = readAt(file, dyn.offset, dyn.size);
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const needed: bigint[] = [];
  let strtab = -1;
  for (let o = 0; o + 16 <= d.length; o += 16) {
    const tag = dv.getBigInt64(o, true), val = dv.getBigUint64(o + 8, true);
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) needed.push(val);
    if (tag === DT_STRTAB) strtab = Number(val);
  }
  const seg = loads.find((l) => strtab >= l.vaddr && strtab < l.vaddr + l.size);
  if (seg === undefined) throw new TypeError(`'${path}': DT_STRTAB is outside every PT_LOAD`);
  const strOffset = strtab - seg.vaddr + seg.offset;
  return needed.map((n) => {
    const bytes = readAt(file, strOffset + Number(n), 256);
    return new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0)));
  });
}

/** Sonames needed (transitively) by `files` that none of `libDirs` holds. */
export function missingSonames(files: string[], libDirs: string[]): string[] {
  const missing = new Set<string>(), seen = new Set<string>();
  const queue = [...files];
  while (queue.length > 0) {
    const f = queue.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const so of neededOf(f)) {
      const found = libDirs.map((dir) => `${dir}/${so}`).find((c) => {
        try {
          return Deno.statSync(c).isFile;
        } catch {
          return false;
        }
      });
      if (found === undefined) missing.add(so);
      else queue.push(Deno.realPathSync(found));
    }
  }
  return [...missing].sort();
}

if (import.meta.main) {
  const libDirs: string[] = [], files: string[] = [];
  for (let i = 0; i < Deno.args.length; i++) {
    const a = Deno.args[i]!;
    if (a === "--lib-dir" && i + 1 < Deno.args.length) libDirs.push(Deno.args[++i]!);
    else files.push(a);
  }
  if (files.length === 0 || libDirs.length === 0) {
    console.error("usage: elf_needed.ts --lib-dir DIR [--lib-dir DIR...] FILE...");
    Deno.exit(2);
  }
  try {
    for (const so of missingSonames(files, libDirs)) console.log(so);
  } catch (e) {
    console.error(`elf_needed: ${e instanceof Error ? e.message : e}`);
    Deno.exit(2);
  }
}
