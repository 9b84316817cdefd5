/**
 * Safe file output: every document is written to a temporary file beside its target and renamed
 * into place, so a crash never leaves a half-written result; an existing file is replaced only
 * when the caller says so.
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

/** Directory part of a path ("." when none). */
function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/**
 * Writes `text` to `path` atomically (temporary file + rename), creating parent folders. Throws
 * {@linkcode FileExistsError} when `path` exists and `force` is not set.
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
  await Deno.mkdir(dirOf(path), { recursive: true });
  const tmp = `${path}.${Deno.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    if (typeof text === "string") await Deno.writeTextFile(tmp, text);
    else await Deno.writeFile(tmp, text);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
