/** A temporary directory that removes itself, for `await using`. */
export interface TempDir extends AsyncDisposable {
  readonly path: string;
}

/**
 * Makes a fresh directory under the system temp dir. Use it with
 * `await using dir = await tempDir("x")` so it is removed, with everything in
 * it, however the block ends.
 */
export async function tempDir(prefix: string): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix: `${prefix}-` });
  return {
    path,
    async [Symbol.asyncDispose](): Promise<void> {
      await Deno.remove(path, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    },
  };
}
