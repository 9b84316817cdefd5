/**
 * Safe file output: every document is written to a temporary file beside its target and renamed
 * into place, so a crash never leaves a half-written result; an existing file is replaced only
 * when the caller says so. A symbolic link given as the output is written through (its target is
 * replaced), never replaced itself. Outputs are checked before any work: writable, and neither an
 * input nor a folder holding or inside an input.
 *
 * @module
 */

/** Raised when a target exists and overwriting was not allowed. */
export class FileExistsError extends Deno.errors.AlreadyExists {
  /** Creates the error naming the path. */
  constructor(path: string) {
    super(`${path} already exists; pass --force to overwrite it`);
    this.name = "FileExistsError";
  }
}

/**
 * An output path that cannot or must not be written: it is an input, holds one or lies inside
 * one, cannot be created, or is a broken symbolic link. Its own class, so the command line treats
 * it as bad input (exit 2).
 */
export class OutputPathError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "OutputPathError";
  }
}

/** Temporary files and folders being written now; removed by {@linkcode removePendingTemps}. */
const pending = new Set<string>();

/**
 * Removes every temporary file or folder a write in progress has created (synchronously, so a
 * signal handler can call it right before exiting): nothing half-written is left behind.
 */
export function removePendingTemps(): void {
  for (const p of pending) {
    try {
      Deno.removeSync(p, { recursive: true });
    } catch { /* already renamed into place or removed */ }
  }
  pending.clear();
}

/**
 * Runs `fn`, which creates `tmp`, synchronously, removing `tmp` if `fn` throws. No signal handler
 * can run inside `fn`, so a second Ctrl-C finds `tmp` either not yet created or already renamed
 * into place: unlike {@linkcode withTemp}, nothing needs registering for
 * {@linkcode removePendingTemps}.
 */
export function withTempSync<T>(tmp: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch { /* never created */ }
    throw e;
  }
}

/** Registers a temporary path while `fn` runs, removing it if `fn` fails. */
export async function withTemp<T>(tmp: string, fn: () => Promise<T>): Promise<T> {
  pending.add(tmp);
  try {
    return await fn();
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  } finally {
    pending.delete(tmp);
  }
}

/** Directory part of a path ("." when none). */
function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** A unique temporary name beside `path`. */
export function tempName(path: string, ext = "tmp"): string {
  return `${path}.${Deno.pid}.${Math.random().toString(36).slice(2)}.${ext}`;
}

/**
 * Where writing `path` lands: `path` itself, or the target of the symbolic link at `path` (written
 * through, never replaced). Throws {@linkcode OutputPathError} for a link to nothing.
 */
export async function writeTarget(path: string): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return path;
    throw e;
  }
  if (!info.isSymlink) return path;
  try {
    return await Deno.realPath(path);
  } catch {
    throw new OutputPathError(
      `${path} is a symbolic link to a missing target; it is not replaced: remove it or give another output`,
    );
  }
}

/**
 * Writes `text` to `path` atomically (temporary file + rename), creating parent folders. Throws
 * {@linkcode FileExistsError} when `path` exists and `force` is not set. A symbolic link at `path`
 * is written through: its target gets the new content, the link stays.
 */
export async function writeFileAtomic(
  path: string,
  text: string | Uint8Array,
  { force = false }: { force?: boolean } = {},
): Promise<void> {
  if (!force) {
    try {
      await Deno.lstat(path);
      throw new FileExistsError(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const target = await writeTarget(path);
  await Deno.mkdir(dirOf(target), { recursive: true });
  const tmp = tempName(target);
  // Written and renamed synchronously: an asynchronous write runs on another thread and can create
  // the temporary file after a second Ctrl-C's handler has removed the pending ones and while the
  // process exits, leaving it behind (seen once in CI). A few milliseconds of blocking at the end
  // of a run is the price.
  withTempSync(tmp, () => {
    if (typeof text === "string") Deno.writeTextFileSync(tmp, text);
    else Deno.writeFileSync(tmp, text);
    Deno.renameSync(tmp, target);
  });
}

/**
 * Checks before any work that `path` can be written: creates its folder and a temporary file
 * beside it, then removes the file. Throws {@linkcode OutputPathError} naming the path and the
 * reason (permission denied, a file where a folder should be, ...).
 */
export async function checkWritable(path: string): Promise<void> {
  try {
    const target = await writeTarget(path);
    const info = await Deno.stat(target).catch(() => null);
    if (info?.isDirectory) throw new Deno.errors.IsADirectory("it is a folder");
    await Deno.mkdir(dirOf(target), { recursive: true });
    const probe = tempName(target, "probe");
    // Synchronous for the reason writeFileAtomic's write is.
    withTempSync(probe, () => {
      Deno.writeTextFileSync(probe, "", { createNew: true });
      Deno.removeSync(probe);
    });
  } catch (e) {
    if (e instanceof OutputPathError) throw e;
    throw new OutputPathError(`cannot write ${path}: ${(e as Error).message}`);
  }
}

/**
 * The absolute form of a path with symbolic links resolved, also for a path that does not exist
 * yet (its longest existing prefix is resolved, the rest appended), so two spellings of one place
 * compare equal.
 */
export async function resolvePath(path: string): Promise<string> {
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const parts: string[] = [];
  for (const p of abs.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") parts.pop();
    else parts.push(p);
  }
  const rest: string[] = [];
  while (true) {
    const head = `/${parts.join("/")}`;
    try {
      const real = await Deno.realPath(head);
      return [real.replace(/\/+$/, ""), ...rest].join("/") || "/";
    } catch {
      if (parts.length === 0) return `/${rest.join("/")}`;
      rest.unshift(parts.pop()!);
    }
  }
}

/** Is `inner` the folder `outer` or inside it (both resolved)? */
function within(inner: string, outer: string): boolean {
  return inner === outer || outer === "/" || inner.startsWith(`${outer}/`);
}

/**
 * Refuses outputs that would destroy or swallow inputs: an output that is an input, a folder
 * holding an input, or a path inside an input folder. Throws {@linkcode OutputPathError} naming
 * both.
 */
export async function refuseOverlap(
  outputs: readonly string[],
  inputs: readonly string[],
): Promise<void> {
  const ins = await Promise.all(inputs.map(async (i) => ({ i, r: await resolvePath(i) })));
  for (const o of outputs) {
    const ro = await resolvePath(o);
    for (const { i, r } of ins) {
      if (ro === r) {
        throw new OutputPathError(`the output ${o} is the input ${i}; choose another output`);
      }
      if (within(r, ro)) {
        throw new OutputPathError(
          `the output ${o} holds the input ${i}, so writing it would replace the input; choose another output`,
        );
      }
      if (within(ro, r)) {
        throw new OutputPathError(
          `the output ${o} lies inside the input folder ${i}; choose an output outside it`,
        );
      }
    }
  }
}

/** Name of the list of files a site folder holds, written into the folder by the tool. */
export const SITE_MANIFEST = ".deft-bench-site.json";

/** Every file under a folder, as paths relative to it (sorted). */
async function filesUnder(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await filesUnder(`${dir}/${e.name}`, rel));
    else out.push(rel);
  }
  return out.sort();
}

/**
 * Checks that replacing the folder `dir` deletes only files this tool wrote there: `dir` is empty,
 * or holds a {@linkcode SITE_MANIFEST} that lists every other file in it. Throws
 * {@linkcode OutputPathError} naming the files it did not write.
 */
export async function checkReplaceable(dir: string): Promise<void> {
  const info = await Deno.stat(dir);
  if (!info.isDirectory) {
    throw new OutputPathError(`${dir} is a file, not a folder written by deft-bench; not replaced`);
  }
  const files = await filesUnder(dir);
  if (files.length === 0) return;
  let listed = new Set<string>();
  try {
    const m = JSON.parse(await Deno.readTextFile(`${dir}/${SITE_MANIFEST}`));
    if (Array.isArray(m?.files)) {
      listed = new Set(m.files.filter((f: unknown) => typeof f === "string"));
    }
  } catch { /* no manifest: nothing in it was written by us */ }
  const foreign = files.filter((f) => f !== SITE_MANIFEST && !listed.has(f));
  if (foreign.length > 0) {
    throw new OutputPathError(
      `${dir} holds ${foreign.length} file(s) deft-bench did not write (${
        foreign.slice(0, 5).join(", ")
      }${
        foreign.length > 5 ? ", ..." : ""
      }); --force only replaces a folder it wrote: remove them or choose another output`,
    );
  }
}

/**
 * Saves `text` under a new name in the system's temporary folder (or the current folder when that
 * fails), for results that could not be written where asked. Returns the path.
 */
export async function saveFallback(text: string, stem = "deft-bench-results"): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const prefix = `${stem}-${stamp}-`;
  let path: string;
  try {
    path = await Deno.makeTempFile({ prefix, suffix: ".json" });
  } catch {
    path = `${prefix}${Deno.pid}.json`;
  }
  await writeFileAtomic(path, text, { force: true });
  return path;
}
