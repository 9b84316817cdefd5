/**
 * Interrupts (Ctrl-C and SIGTERM) for commands that must not lose or half-write results.
 *
 * @module
 */

/** The signals an interrupt arrives as. */
export type InterruptSignal = "SIGINT" | "SIGTERM";

/** The exit status of a command ended by `name` (128 + the signal's number). */
export function interruptStatus(name: InterruptSignal): number {
  return name === "SIGTERM" ? 143 : 130;
}

/**
 * Calls `handler` with the signal's name on each Ctrl-C or SIGTERM (where the platform has the
 * signal; registering replaces the default of ending the process) until the returned function,
 * which may be called more than once, removes it.
 */
export function onInterrupt(handler: (name: InterruptSignal) => void): () => void {
  const listeners = (["SIGINT", "SIGTERM"] as const).flatMap((name) => {
    const h = () => handler(name);
    try {
      Deno.addSignalListener(name, h);
      return [[name, h] as const];
    } catch {
      return []; // a platform without this signal
    }
  });
  return () => {
    for (const [name, h] of listeners.splice(0)) Deno.removeSignalListener(name, h);
  };
}
