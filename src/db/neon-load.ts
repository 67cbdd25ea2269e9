// Loads @neondatabase/serverless on demand, for pgdrain/cloudflare: it is an
// optional peer dependency, and a Worker on Hyperdrive runs without it.
//
// The import names the package itself, inside try: a bundler (esbuild, as in
// `wrangler deploy`) bundles it when the package is installed, and leaves an
// unresolvable one in place when it is not, so the Worker still bundles and
// this import fails at run time, only when a Neon driver is asked for. A
// relative import of src/db/neon.js would not do: its static import of the
// missing package fails the whole bundle.
import { ValidationError } from '../errors.js';
import type { NeonModule } from './neon-drivers.js';

const NEON_PACKAGE = '@neondatabase/serverless';

/**
 * The package, or a ValidationError on `field` (what asked for a Neon driver)
 * saying to install it. `wanted` names that driver in the message.
 */
export async function loadNeon(field: string, wanted: string): Promise<NeonModule> {
  try {
    return await import('@neondatabase/serverless');
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ValidationError(field, `${wanted} needs ${NEON_PACKAGE}, which could not be loaded (${reason}): `
      + `npm install ${NEON_PACKAGE}, then build or deploy again`, { cause: error });
  }
}
