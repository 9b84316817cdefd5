/**
 * Test assertions: thin std-style names over `node:assert/strict` (so moving to `@std/assert` is a
 * one-file change), plus numeric closeness.
 */
import assert from "node:assert/strict";

export const assertEquals: <T>(actual: unknown, expected: T, message?: string) => void =
  assert.deepStrictEqual;
export const assertStrictEquals: <T>(actual: unknown, expected: T, message?: string) => void =
  assert.strictEqual;
export const assertNotEquals = (actual: unknown, expected: unknown, message?: string): void =>
  assert.notDeepStrictEqual(actual, expected, message);
export const assert_ = (value: unknown, message?: string): void => assert.ok(value, message);
export { assert_ as assert };
export const assertThrows = (
  fn: () => unknown,
  error?: RegExp | (new (...a: never[]) => Error),
  message?: RegExp,
): void => {
  try {
    fn();
  } catch (e) {
    if (typeof error === "function" && !(e instanceof error)) {
      throw new assert.AssertionError({ message: `Expected ${error.name}, got ${e}` });
    }
    const re = error instanceof RegExp ? error : message;
    if (re && !re.test(String((e as Error).message))) {
      throw new assert.AssertionError({
        message: `Error message ${JSON.stringify((e as Error).message)} does not match ${re}`,
      });
    }
    return;
  }
  throw new assert.AssertionError({ message: "Expected the function to throw" });
};
export const assertRejects = async (
  fn: () => Promise<unknown>,
  error?: RegExp | (new (...a: never[]) => Error),
  message?: RegExp,
): Promise<void> => {
  try {
    await fn();
  } catch (e) {
    if (typeof error === "function" && !(e instanceof error)) {
      throw new assert.AssertionError({ message: `Expected ${error.name}, got ${e}` });
    }
    const re = error instanceof RegExp ? error : message;
    if (re && !re.test(String((e as Error).message))) {
      throw new assert.AssertionError({
        message: `Error message ${JSON.stringify((e as Error).message)} does not match ${re}`,
      });
    }
    return;
  }
  throw new assert.AssertionError({ message: "Expected the promise to reject" });
};
export const assertMatch = (actual: string, re: RegExp, message?: string): void =>
  assert.match(actual, re, message);

/** |actual - expected| <= atol + rtol * |expected|. */
export function assertAlmostEquals(
  actual: number,
  expected: number,
  atol = 1e-9,
  rtol = 0,
  message?: string,
): void {
  if (!(Math.abs(actual - expected) <= atol + rtol * Math.abs(expected))) {
    throw new assert.AssertionError({
      message: message ??
        `Expected ${actual} to be within ${atol} (+${rtol} relative) of ${expected}`,
    });
  }
}

/** Element-wise closeness, reporting the worst index and the count of mismatches. */
export function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-12, rtol = 1e-9 }: { atol?: number; rtol?: number } = {},
): void {
  if (actual.length !== expected.length) {
    throw new assert.AssertionError({
      message: `Length ${actual.length} differs from expected ${expected.length}`,
    });
  }
  let bad = 0, worst = -1, worstErr = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= atol + rtol * Math.abs(expected[i]!))) {
      bad++;
      if (!(err <= worstErr)) {
        worstErr = err;
        worst = i;
      }
    }
  }
  if (bad > 0) {
    throw new assert.AssertionError({
      message: `${bad} of ${actual.length} elements differ; worst at ${worst}: ${
        actual[worst]
      } vs ${expected[worst]} (abs error ${worstErr})`,
    });
  }
}
