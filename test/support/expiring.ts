// Another consumer of the queue, as any other drain's claim (or jobs.maintain)
// is on a busy one: it expires passed leases, every 20 ms, until stopped.
import pg from 'pg';

/** Starts expiring on a connection of its own; what it returns stops it and ends the connection. */
export async function expiringElsewhere(url: string): Promise<() => Promise<void>> {
  const other = new pg.Client({ connectionString: url });
  await other.connect();
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      await other.query('select jobs.expire()');
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return async () => {
    stop = true;
    await loop;
    await other.end();
  };
}
