// Starts one PostgreSQL for the whole run and migrates a template database;
// each test file clones it (see db.ts), so files run in parallel, isolated.
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../../src/migrate.js';
import { pgDriver } from '../../src/db/pg.js';
import { startServer, type Server } from './postgres.js';

export const TEMPLATE = 'pgdrain_template';

let server: Server | undefined;

export default async function setup(project: TestProject) {
  server = await startServer();
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query(`drop database if exists ${TEMPLATE}`);
  await admin.query(`create database ${TEMPLATE}`);
  await admin.end();
  const url = new URL(server.url);
  url.pathname = `/${TEMPLATE}`;
  const driver = pgDriver(url.href);
  await migrate(driver);
  await driver.close();
  process.env.PGDRAIN_TEST_SERVER = server.url;
  project.provide('serverUrl', server.url);
  project.provide('serverKind', server.kind);
  project.provide('pgCron', server.pgCron);
  project.provide('serverTls', server.tls);
  return async () => {
    await server?.stop();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    serverUrl: string;
    serverKind: string;
    pgCron: boolean;
    serverTls: boolean;
  }
}
