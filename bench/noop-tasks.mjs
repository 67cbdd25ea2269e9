// The tasks module the CLI measurements drain with: one task that does nothing.
export const noop = async () => null;
