// What a schema does not check in deploy/k8s/: that the Jobs' restart policy,
// deadlines and grace periods agree with the drain settings they run with.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cron } from 'croner';
import { parseAllDocuments } from 'yaml';
import { DRAIN_ENV } from '../../src/cli/env.js';

/** Seconds a pod may need to be pulled, start node and connect before its drain's clock runs. */
export const STARTUP_MARGIN_S = 15;
/** After the grace: giving back what still runs, printing the report, closing connections. */
export const SETTLE_MARGIN_S = 5;

export type Manifest = { kind: string; metadata?: { name?: string; generateName?: string }; [key: string]: any };

/** Every document of every .yaml file in dir, with the file it came from. */
export function loadManifests(dir: string): { file: string; doc: Manifest }[] {
  return readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().flatMap((file) =>
    parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
      return { file, doc: d.toJS() as Manifest };
    }));
}

/** The pod template of a Job or CronJob, with the Job spec around it. */
export function jobParts(m: Manifest): { job: any; pod: any } | undefined {
  if (m.kind === 'Job') return { job: m.spec, pod: m.spec?.template?.spec };
  if (m.kind === 'CronJob') return { job: m.spec?.jobTemplate?.spec, pod: m.spec?.jobTemplate?.spec?.template?.spec };
  return undefined;
}

/** A container's environment: envFrom ConfigMaps and Secrets of `all`, then env on top. */
export function containerEnv(container: any, all: Manifest[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    const kind = from.configMapRef ? 'ConfigMap' : 'Secret';
    const source = all.find((m) => m.kind === kind && m.metadata?.name === ref?.name);
    if (!source) throw new Error(`envFrom refers to ${kind} ${ref?.name}, which deploy/k8s does not define`);
    Object.assign(env, source.data ?? {}, source.stringData ?? {});
  }
  for (const e of container.env ?? []) env[e.name] = String(e.value);
  return env;
}

/** The shortest time between two runs of a cron schedule, in seconds (over its next 500 runs). */
export function shortestInterval(schedule: string, timezone?: string): number {
  const runs = new Cron(schedule, { timezone }).nextRuns(500, new Date('2030-01-01T00:00:00Z'));
  let shortest = Infinity;
  for (let i = 1; i < runs.length; i++) shortest = Math.min(shortest, (runs[i]!.getTime() - runs[i - 1]!.getTime()) / 1000);
  return shortest;
}

/**
 * Problems of one drain workload (Job or CronJob) against the drain settings
 * its container gets; [] when it is consistent.
 */
export function drainProblems(m: Manifest, all: Manifest[]): string[] {
  const parts = jobParts(m);
  if (!parts) return [];
  const { job, pod } = parts;
  const where = `${m.kind} ${m.metadata?.name ?? m.metadata?.generateName ?? ''}`;
  const problems: string[] = [];
  if (pod?.restartPolicy !== 'Never' && pod?.restartPolicy !== 'OnFailure') {
    problems.push(`${where}: restartPolicy must be Never or OnFailure in a Job, got ${pod?.restartPolicy ?? 'none (Always)'}`);
  }
  if (job?.podFailurePolicy && pod?.restartPolicy !== 'Never') problems.push(`${where}: podFailurePolicy needs restartPolicy Never`);
  const container = pod?.containers?.[0];
  const args: string[] = [...(container?.command ?? []), ...(container?.args ?? [])];
  if (!args.includes('drain')) return problems; // e.g. the migrate Job: no drain settings to check

  const env = containerEnv(container, all);
  const known = new Set(DRAIN_ENV.map(([, variable]) => variable));
  for (const name of Object.keys(env)) {
    if (name.startsWith('PGDRAIN_') && !known.has(name)) problems.push(`${where}: unknown setting ${name}`);
  }
  if (!env.DATABASE_URL) problems.push(`${where}: no DATABASE_URL (the drain would use an embedded database in the pod)`);
  if (!env.PGDRAIN_TASKS) problems.push(`${where}: no PGDRAIN_TASKS`);
  const deadline = Number(env.PGDRAIN_DEADLINE_SECONDS ?? 300);
  const grace = Number(env.PGDRAIN_GRACE_SECONDS ?? 10);

  const termination = pod.terminationGracePeriodSeconds ?? 30;
  if (termination < grace + SETTLE_MARGIN_S) {
    problems.push(`${where}: terminationGracePeriodSeconds ${termination} must be at least the drain's grace ${grace} + ${SETTLE_MARGIN_S} s ` +
      'to give back what still runs before SIGKILL');
  }
  const onePod = deadline + grace + STARTUP_MARGIN_S;
  const waves = Math.ceil((job.completions ?? 1) / (job.parallelism ?? 1));
  if (job.activeDeadlineSeconds === undefined) problems.push(`${where}: no activeDeadlineSeconds (a hung pod would run forever)`);
  else if (job.activeDeadlineSeconds < waves * onePod) {
    problems.push(`${where}: activeDeadlineSeconds ${job.activeDeadlineSeconds} must be at least ${waves} wave(s) × ` +
      `(deadline ${deadline} + grace ${grace} + ${STARTUP_MARGIN_S} s start) = ${waves * onePod}, or it kills healthy drains`);
  }
  if ((job.parallelism ?? 1) > (job.completions ?? Infinity)) problems.push(`${where}: parallelism exceeds completions`);

  if (m.kind === 'CronJob') {
    const interval = shortestInterval(m.spec.schedule, m.spec.timeZone);
    const policy = m.spec.concurrencyPolicy ?? 'Allow';
    if (policy === 'Forbid' && (job.activeDeadlineSeconds ?? Infinity) >= interval) {
      problems.push(`${where}: with concurrencyPolicy Forbid, activeDeadlineSeconds ${job.activeDeadlineSeconds} must be under ` +
        `the ${interval} s between runs, or runs are skipped`);
    }
    if (policy === 'Replace' && deadline + grace >= interval) {
      problems.push(`${where}: with concurrencyPolicy Replace, every run would be stopped by the next one`);
    }
    const starting = m.spec.startingDeadlineSeconds;
    if (starting === undefined || starting < 10 || starting >= interval) {
      problems.push(`${where}: startingDeadlineSeconds must be from 10 to under the ${interval} s between runs, got ${starting}`);
    }
  }
  return problems;
}
