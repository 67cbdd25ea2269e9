// A database name with a % in it: a URL writes it %25 (my%2541db is the name
// my%41db), and pg reads it so. The Neon Pool's URL parser (bundled in
// @neondatabase/serverless) decodes the path twice (decodeURIComponent, then
// pg's decodeURI), so it asked for "myAdb": "database does not exist". pgdrain
// now writes each % of the path %25 once more for the Neon Pool only, so it
// reads the name pg reads. The Pool runs over a local WebSocket proxy.
import { parse } from 'pg-connection-string';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { pgConnectionString } from '../src/database-url.js';
import { neonDriver } from '../src/db/neon.js';
import { pgDriver } from '../src/db/pg.js';
import type { Driver } from '../src/index.js';
import { testDb } from './support/db.js';
import { startWsProxy, type WsProxy } from './support/ws-proxy.js';

const db = await testDb();
const { host } = new URL(db.url);
const tag = Math.random().toString(36).slice(2, 8);
// [the name as written in the URL's path, the database's name]
const names: [string, string][] = [
  [`my%2541db_${tag}`, `my%41db_${tag}`],
  [`a%25b_${tag}`, `a%b_${tag}`],
  [`caf%C3%A9%2525_${tag}`, `café%25_${tag}`],
];
let proxy: WsProxy;

beforeAll(async () => {
  for (const [, name] of names) await db.sql(`create database "${name}"`);
  proxy = await startWsProxy();
});
afterAll(async () => {
  await proxy?.close();
  for (const [, name] of names) await db.sql(`drop database if exists "${name}" with (force)`);
});

const currentDatabase = async (driver: Driver) => {
  try {
    return (await driver.query<{ d: string }>('select current_database() as d')).rows[0]!.d;
  } finally {
    await driver.close();
  }
};

// neonDriver is neonPoolDriver, the Worker's neon driver, over the package's static import.
it.each(names)('path %s: pg and the Neon Pool both reach database %s', async (path, name) => {
  const url = `postgres://postgres@${host}/${path}`;
  expect(parse(pgConnectionString(url)).database).toBe(name);
  expect(await currentDatabase(pgDriver(url))).toBe(name);
  expect(await currentDatabase(neonDriver(url, { wsProxy: proxy.url, webSocketConstructor: WebSocket }))).toBe(name);
});
