// deploy/k8s/ and the Dockerfile: every manifest validated against the
// Kubernetes schema (kubernetes-models), then the checks a schema misses
// (test/support/k8s-checks.ts), and the drain settings they carry run through
// the real CLI. No API server runs here, so nothing is applied to a cluster,
// and no container engine, so the image is not built.
import { existsSync, readFileSync } from 'node:fs';
import { ConfigMap, Secret } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { CLI, FAULT_TASKS, kubeletStop, reportOf, spawnCli, until } from './support/drain-process.js';
import { BACKOFF_RESET_S, containerEnv, drainProblems, jobParts, loadManifests, podOf, shortestInterval,
  type Manifest } from './support/k8s-checks.js';

const manifests = loadManifests('deploy/k8s');
const all = manifests.map((m) => m.doc);
const models: Record<string, new (data: any) => { validate(): void }> = { ConfigMap, Secret, Job, CronJob, Deployment };
const byKind = (kind: string) => all.filter((m) => m.kind === kind);
const drainWorkloads = all.filter((m) => podOf(m)?.containers?.[0]?.args?.includes('drain'));
const clone = (m: Manifest): Manifest => structuredClone(m);
const db = await testDb();

describe('deploy/k8s manifests', () => {
  it('has a CronJob, a parallel Job, a worker Deployment, a migrate Job, a ConfigMap and a Secret', () => {
    expect(manifests.map((m) => `${m.file}:${m.doc.kind}`)).toEqual([
      'configmap.yaml:ConfigMap', 'cronjob.yaml:CronJob', 'deployment.yaml:Deployment', 'job-parallel.yaml:Job',
      'migrate-job.yaml:Job', 'secret.yaml:Secret']);
    expect(drainWorkloads.map((m) => m.kind).sort()).toEqual(['CronJob', 'Deployment', 'Job']);
  });

  it.each(manifests)('$file validates against the Kubernetes schema', ({ doc }) => {
    const Model = models[doc.kind];
    expect(Model, `no schema model for kind ${doc.kind}`).toBeDefined();
    expect(() => new Model!(doc).validate()).not.toThrow();
  });

  it('the schema check fails on a wrong type (it is not a no-op)', () => {
    const job = clone(byKind('Job').find((m) => m.spec.parallelism)!);
    job.spec.parallelism = 'eight';
    expect(() => new Job(job as any).validate()).toThrow(/parallelism/);
  });

  it.each(all.filter((m) => podOf(m)).map((m) => [`${m.kind} ${m.metadata?.name ?? m.metadata?.generateName}`, m] as const))(
    '%s: restart policy, deadlines and grace agree with its drain settings', (_, m) => {
      expect(drainProblems(m, all)).toEqual([]);
    });

  it('the CronJob runs every 5 minutes and its backstop deadline ends each run before the next', () => {
    const cron = byKind('CronJob')[0]!;
    expect(shortestInterval(cron.spec.schedule, cron.spec.timeZone)).toBe(300);
    expect(cron.spec.concurrencyPolicy).toBe('Forbid');
    expect(cron.spec.jobTemplate.spec.activeDeadlineSeconds).toBeLessThan(300);
  });

  it('the Deployment drains for a day: its restarts do not back off, an idle queue does not end it, a rollout keeps a pod', () => {
    const worker = byKind('Deployment')[0]!;
    const env = containerEnv(podOf(worker).containers[0], all);
    expect(Number(env.PGDRAIN_DEADLINE_SECONDS)).toBeGreaterThan(BACKOFF_RESET_S);
    expect(Number(env.PGDRAIN_LINGER_SECONDS)).toBe(Number(env.PGDRAIN_DEADLINE_SECONDS));
    expect(worker.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(worker.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
  });

  it('the checks catch what the schema lets through', () => {
    const cron = byKind('CronJob')[0]!;
    const job = byKind('Job').find((m) => m.spec.parallelism)!;
    const mutate = (m: Manifest, change: (pod: any, jobSpec: any, m: Manifest) => void) => {
      const c = clone(m);
      const parts = jobParts(c)!;
      change(parts.pod, parts.job, c);
      expect(() => new models[c.kind]!(c).validate()).not.toThrow(); // the schema accepts each of these
      return drainProblems(c, all);
    };
    expect(mutate(job, (pod) => (pod.restartPolicy = 'Always'))).toEqual(expect.arrayContaining([
      expect.stringMatching(/restartPolicy must be Never or OnFailure.*got Always/)]));
    expect(mutate(job, (pod) => (pod.terminationGracePeriodSeconds = 20))).toEqual([
      expect.stringMatching(/terminationGracePeriodSeconds 20 must be at least the drain's grace 20/)]);
    // The grace alone fits, but the overrun after it (a database that stopped answering) does not.
    expect(mutate(job, (pod) => (pod.terminationGracePeriodSeconds = 29))).toEqual([
      expect.stringMatching(/terminationGracePeriodSeconds 29 must be at least the drain's grace 20 \+ overrun 5 \+ 5 s/)]);
    expect(mutate(job, (_, spec) => (spec.completions = 24))).toEqual([
      expect.stringMatching(/activeDeadlineSeconds 1800 must be at least 3 wave/)]);
    expect(mutate(cron, (_, spec) => (spec.activeDeadlineSeconds = 200))).toEqual([
      expect.stringMatching(/activeDeadlineSeconds 200 must be at least 1 wave\(s\) × \(deadline 240/)]);
    expect(mutate(cron, (_, __, c) => (c.spec.schedule = '*/4 * * * *'))).toEqual([
      expect.stringMatching(/Forbid, activeDeadlineSeconds 285 must be under the 240 s between runs/)]);
    expect(mutate(cron, (pod) => pod.containers[0].env = [{ name: 'PGDRAIN_BATCH', value: '5' }])).toEqual([
      'CronJob pgdrain-drain: unknown setting PGDRAIN_BATCH']);
  });

  it('the checks catch what the schema lets through in the Deployment', () => {
    const worker = byKind('Deployment')[0]!;
    const mutate = (change: (pod: any, m: Manifest) => void) => {
      const c = clone(worker);
      change(podOf(c), c);
      expect(() => new Deployment(c as any).validate()).not.toThrow(); // the schema accepts each of these
      return drainProblems(c, all);
    };
    const setEnv = (pod: any, name: string, value: string) =>
      (pod.containers[0].env = pod.containers[0].env.map((e: any) => e.name === name ? { name, value } : e));
    expect(mutate((pod) => (pod.restartPolicy = 'Never'))).toEqual([
      'Deployment pgdrain-worker: restartPolicy must be Always in a Deployment, got Never']);
    // The CronJob's minute drain in a Deployment: ended every 55 s, it would be restarted ever later.
    expect(mutate((pod) => { setEnv(pod, 'PGDRAIN_DEADLINE_SECONDS', '55'); setEnv(pod, 'PGDRAIN_LINGER_SECONDS', '55'); })).toEqual([
      expect.stringMatching(/deadline 55 must exceed 600 s, or the kubelet delays each restart longer \(CrashLoopBackOff\)/)]);
    expect(mutate((pod) => setEnv(pod, 'PGDRAIN_LINGER_SECONDS', '60'))).toEqual([
      expect.stringMatching(/linger 60 must be at least the deadline 86400, or an idle queue ends the drain early/)]);
    expect(mutate((pod) => (pod.containers[0].env = []))).toEqual([ // the ConfigMap's 240 s and no linger
      expect.stringMatching(/deadline 240 must exceed 600 s/), expect.stringMatching(/linger 0 must be at least the deadline 240/)]);
    expect(mutate((pod) => (pod.terminationGracePeriodSeconds = 20))).toEqual([
      expect.stringMatching(/terminationGracePeriodSeconds 20 must be at least the drain's grace 20/)]);
    expect(mutate((_, c) => (c.spec.selector.matchLabels['app.kubernetes.io/component'] = 'drain'))).toEqual([
      'Deployment pgdrain-worker: selector app.kubernetes.io/component=drain does not match the pod template\'s labels']);
  });
});

describe('the container entrypoint: pgdrain drain configured by the environment', () => {
  const run = (env: Record<string, string>, args: string[] = []) =>
    spawnCli(['drain', '--json', ...args], { DATABASE_URL: db.url, PGDRAIN_TASKS: FAULT_TASKS, ...env }).exited;

  it.each(drainWorkloads.filter((m) => jobParts(m)).map((m) => [m.kind, m] as const))(
    'the %s settings pass the real CLI, which drains and exits 0', async (_, m) => {
    const env = containerEnv(jobParts(m)!.pod.containers[0], all);
    // The cluster's database and the image's tasks path do not exist here: only those two are swapped.
    const exit = await run({ ...env, DATABASE_URL: db.url, PGDRAIN_TASKS: FAULT_TASKS });
    expect(exit).toMatchObject({ code: 0, stderr: '' });
    expect(reportOf(exit)).toMatchObject({ stoppedBy: 'empty', claimed: 0 });
  });

  it.each([
    [{ PGDRAIN_BATCH_SIZE: 'lots' }, 'pgdrain: PGDRAIN_BATCH_SIZE: must be an integer from 1 to 10000, got "lots"'],
    [{ PGDRAIN_DEADLINE_SECONDS: '-5' }, 'pgdrain: PGDRAIN_DEADLINE_SECONDS: must be a number of seconds from 0.1 to 86400, got "-5"'],
    [{ PGDRAIN_GRACE_SECONDS: '1h' }, 'pgdrain: PGDRAIN_GRACE_SECONDS: must be a number of seconds from 0 to 3600, got "1h"'],
    [{ PGDRAIN_CONCURRENCY: '0' }, 'pgdrain: PGDRAIN_CONCURRENCY: must be an integer from 1 to 10000, got "0"'],
    [{ PGDRAIN_TOPIC: '' }, 'pgdrain: PGDRAIN_TOPIC: is set but empty: give a value or unset it'],
    [{ PGDRAIN_TASKS: '' }, 'pgdrain: PGDRAIN_TASKS: is set but empty: give a value or unset it'],
    // Rules of the core's options, named as the variable too (they read "--queue: …" before)
    [{ PGDRAIN_QUEUE: 'bad q' }, 'pgdrain: PGDRAIN_QUEUE: must be dot-separated words of letters, digits, _ : or -, got "bad q"'],
    [{ PGDRAIN_WORKER_ID: 'w'.repeat(201) }, `pgdrain: PGDRAIN_WORKER_ID: must be at most 200 characters, got "${'w'.repeat(201)}"`],
    [{ PGDRAIN_OVERRUN_SECONDS: '-1' }, 'pgdrain: PGDRAIN_OVERRUN_SECONDS: must be a number of seconds from 0 to 3600, got "-1"'],
    [{ PGDRAIN_LINGER_SECONDS: '-1' }, 'pgdrain: PGDRAIN_LINGER_SECONDS: must be a number of seconds from 0 to 86400, got "-1"'],
    [{ PGDRAIN_POLL_SECONDS: '0.01' }, 'pgdrain: PGDRAIN_POLL_SECONDS: must be a number of seconds from 0.05 to 3600, got "0.01"'],
  ])('%o is a configuration error: exit 2, one line naming the variable and the rule', async (env, line) => {
    const exit = await run(env);
    expect(exit).toMatchObject({ code: 2, stdout: '', stderr: `${line}\n` });
  });

  it('without --tasks or PGDRAIN_TASKS it exits 2 saying so', async () => {
    const exit = await spawnCli(['drain'], { DATABASE_URL: db.url }).exited;
    expect(exit).toMatchObject({ code: 2, stderr: 'pgdrain: --tasks: is required: give --tasks MODULE or set PGDRAIN_TASKS\n' });
  });

  it('variables fill absent flags; a flag wins, and a bad variable behind a flag is not read', async () => {
    await db.sql('create table if not exists fault_runs (key text, job_id bigint, attempt int, pid int)');
    await db.sql(`select jobs.publish('fault.record', '{"key": "a"}')`);
    await db.sql(`select jobs.publish('fault.record', '{"key": "b"}')`);
    const exit = await run({ PGDRAIN_BATCH_SIZE: 'lots', PGDRAIN_WORKER_ID: 'from-env', FAULT_RECORD_URL: db.url },
                           ['--batch', '1']);
    expect(exit).toMatchObject({ code: 0, stderr: '' });
    expect(reportOf(exit)).toMatchObject({ claimed: 2, succeeded: 2, batches: 3 }); // --batch 1: one job per claim
    expect(await db.sql('select worker_id from jobs.job')).toEqual([{ worker_id: 'from-env' }, { worker_id: 'from-env' }]);
  });

  it('an unreachable database is an infrastructure error: exit 1, one line', async () => {
    const exit = await run({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    expect(exit).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^pgdrain: database unavailable: [^\n]+\n$/) });
  });

  // After the test above that counts every jobs.job row.
  it('the Deployment settings pass the real CLI: it lingers on the empty queue, runs a job published meanwhile, and ends on SIGTERM with exit 0', async () => {
    const pod = podOf(byKind('Deployment')[0]!);
    const env = containerEnv(pod.containers[0], all);
    await db.sql('create table if not exists fault_runs (key text, job_id bigint, attempt int, pid int)');
    const p = spawnCli(['drain', '--json'], { ...env, DATABASE_URL: db.url, PGDRAIN_TASKS: FAULT_TASKS, FAULT_RECORD_URL: db.url });
    const listening = async () => (await db.sql(
      `select 1 from pg_stat_activity where datname = current_database() and query ilike 'listen %'`)).length;
    await until(listening, 'the drain to listen on the empty queue');
    await db.sql(`select jobs.publish('fault.record', '{"key": "worker"}')`);
    await until(async () => (await db.sql(`select 1 from fault_runs where key = 'worker'`)).length, 'the job to run');
    await until(async () => (await db.sql(`select 1 from jobs.job where body->>'key' = 'worker' and status = 'success'`)).length,
      'its ack');
    expect(p.child.exitCode).toBe(null); // the queue is empty again: the drain still lingers
    expect(await listening()).toBe(1);
    const exit = await kubeletStop(p, pod.terminationGracePeriodSeconds);
    expect(exit).toMatchObject({ code: 0, stderr: expect.stringMatching(/^pgdrain: SIGTERM: claiming no more jobs/) });
    expect(reportOf(exit)).toMatchObject({ stoppedBy: 'signal', claimed: 1, succeeded: 1, failed: 0 });
  });
});

describe('Dockerfile', () => {
  const lines = readFileSync('Dockerfile', 'utf8').split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const instr = (name: string) => lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());

  it('starts the CLI with node as PID 1 (exec form), so the kubelet SIGTERM reaches the drain', () => {
    const bin = JSON.parse(readFileSync('package.json', 'utf8')).bin.pgdrain as string;
    expect(instr('ENTRYPOINT').map((e) => JSON.parse(e))).toEqual([['node', `/app/${bin}`]]);
    expect(instr('CMD').map((e) => JSON.parse(e))).toEqual([['drain']]);
    expect(CLI.endsWith(bin)).toBe(true);
  });

  it('runs as a numeric non-root user (runAsNonRoot in the manifests can check it) with the ConfigMap tasks path', () => {
    expect(instr('USER')).toEqual([expect.stringMatching(/^[1-9]\d*(:\d+)?$/)]);
    const tasks = byKind('ConfigMap')[0]!.data.PGDRAIN_TASKS as string;
    expect(lines.join('\n')).toContain(`PGDRAIN_TASKS=${tasks}`);
    expect(lines.some((l) => l.startsWith('COPY ') && l.trim().endsWith(` ./${tasks.replace('/app/', '')}`))).toBe(true);
  });

  it('copies only paths that exist in the repository into the build stage', () => {
    const sources = instr('COPY').filter((c) => !c.startsWith('--from')).flatMap((c) => c.split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(3);
    for (const s of sources) expect(existsSync(s), s).toBe(true);
  });
});
