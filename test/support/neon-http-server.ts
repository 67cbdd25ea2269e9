// A stand-in for Neon's HTTP SQL endpoint, built on pg: no implementation of
// it can run here (it is part of Neon's proxy, not open to run locally), so
// this speaks the same protocol @neondatabase/serverless's neon() sends:
//   POST /sql, body {query, params} or {queries: [{query, params}, …]} (a batch
//   run in one transaction), headers Neon-Connection-String,
//   Neon-Raw-Text-Output, Neon-Array-Mode and Neon-Batch-*;
//   200 {fields, rows (text values, as arrays), command, rowCount} or {results: […]};
//   400 {message, code, column, …} for a PostgreSQL error.
// Like Neon's endpoint it prepares every query (extended protocol), so a text
// of several statements fails, and it keeps no session between requests.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import pg from 'pg';

export interface NeonHttpServer {
  /** The value for neonConfig.fetchEndpoint / neonHttpDriver's fetchEndpoint. */
  endpoint: string;
  /** POST /sql requests served: one per round trip. */
  readonly requests: number;
  close(): Promise<void>;
}

const errorFields = ['code', 'severity', 'detail', 'hint', 'position', 'internalPosition', 'internalQuery',
  'where', 'schema', 'table', 'column', 'dataType', 'constraint', 'file', 'line', 'routine'] as const;

// Raw text output: every value goes back as PostgreSQL's text, the client parses it.
const rawText = { getTypeParser: () => (value: string) => value };

interface Statement {
  query: string;
  params?: unknown[];
}

async function run(db: pg.Pool | pg.PoolClient, s: Statement, arrayMode: boolean) {
  const r = await db.query({ text: s.query, values: s.params ?? [], rowMode: arrayMode ? 'array' : undefined,
                             types: rawText, queryMode: 'extended' } as pg.QueryConfig);
  return {
    command: r.command, rowCount: r.rowCount, rowAsArray: arrayMode, rows: r.rows,
    fields: r.fields.map(({ name, tableID, columnID, dataTypeID, dataTypeSize, dataTypeModifier, format }) =>
      ({ name, tableID, columnID, dataTypeID, dataTypeSize, dataTypeModifier, format })),
  };
}

const isolation: Record<string, string> = {
  ReadUncommitted: 'read uncommitted', ReadCommitted: 'read committed',
  RepeatableRead: 'repeatable read', Serializable: 'serializable',
};

export async function startNeonHttpServer(): Promise<NeonHttpServer> {
  const pools = new Map<string, pg.Pool>();
  const poolFor = (connectionString: string) => {
    let pool = pools.get(connectionString);
    if (!pool) {
      pool = new pg.Pool({ connectionString, max: 10 });
      pool.on('error', () => {});
      pools.set(connectionString, pool);
    }
    return pool;
  };
  let requests = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'POST' || new URL(req.url ?? '/', 'http://x').pathname !== '/sql') {
      return reply(404, { message: 'not found' });
    }
    requests++;
    const connectionString = req.headers['neon-connection-string'];
    if (typeof connectionString !== 'string') return reply(400, { message: 'missing Neon-Connection-String header' });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Statement & { queries?: Statement[] };
    const arrayMode = req.headers['neon-array-mode'] === 'true';
    const pool = poolFor(connectionString);
    try {
      if (!body.queries) return reply(200, await run(pool, body, arrayMode));
      const client = await pool.connect();
      try {
        const level = isolation[String(req.headers['neon-batch-isolation-level'])];
        const readOnly = req.headers['neon-batch-read-only'] === 'true';
        await client.query(`begin${level ? ` isolation level ${level}` : ''}${readOnly ? ' read only' : ''}`);
        const results = [];
        for (const s of body.queries) results.push(await run(client, s, arrayMode));
        await client.query('commit');
        return reply(200, { results });
      } catch (error) {
        await client.query('rollback').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    } catch (error) {
      const e = error as Record<string, unknown> & { message: string };
      if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
        return reply(400, Object.fromEntries([['message', e.message], ...errorFields.map((f) => [f, e[f]])]));
      }
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`could not reach the database: ${e.message}`);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: Error) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(error.message);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}/sql`,
    get requests() {
      return requests;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...pools.values()].map((p) => p.end()));
    },
  };
}
