/**
 * Optional peer dependencies (`mysql2`, `pg`): imported on first use, so SQLite users install neither.
 *
 * @module
 */

/** A database driver that is not installed. */
export class SqlDriverMissingError extends Error {
  override name = 'SqlDriverMissingError';
  readonly code = 'SQL_ERR_DRIVER_MISSING';
}

/** Imports `specifier`, or throws {@link SqlDriverMissingError} naming the package to install. */
export async function loadPeer<T>(specifier: string, pkg: string, engine: string): Promise<T> {
  try {
    const mod = (await import(specifier)) as { default?: T } & T;
    return mod.default ?? mod;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new SqlDriverMissingError(`${engine} needs the optional dependency "${pkg}": npm install ${pkg}`, {
        cause: err,
      });
    }
    throw err;
  }
}
