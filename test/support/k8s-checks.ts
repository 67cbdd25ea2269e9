// What a schema does not check in deploy/k8s/: that the Jobs' restart policy,
// deadlines and grace periods, and the Deployment's drain (an always-on
// worker the kubelet restarts), agree with the drain settings they run with.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cron } from 'croner';
import { parseAllDocuments } from 'yaml';
import { DRAIN_ENV } from '../../src/cli/env.js';

/** Seconds a pod may need to be pulled, start node and connect before its drain's clock runs. */
export const STARTUP_MARGIN_S = 15;
/** After the grace: giving back what still runs, printing the report, closing connections. */
export const SETTLE_MARGIN_S = 5;
/**
 * The kubelet delays each restart of a container (10 s, doubling to 5
 * minutes: CrashLoopBackOff), whatever its exit code, unless it ran this
 * long, which resets the delay.
 */
export const BACKOFF_RESET_S = 600;

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

/** The pod template of a Job, CronJob or Deployment. */
export function podOf(m: Manifest): any {
  return m.kind === 'Deployment' ? m.spec?.template?.spec : jobParts(m)?.pod;
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
 * Problems of one drain workload (Job, CronJob or Deployment) against the
 * drain settings its container gets; [] when it is consistent.
 */
export function drainProblems(m: Manifest, all: Manifest[]): string[] {
  if (m.kind === 'Deployment') return workerProblems(m, all);
  const parts = jobParts(m);
  if (!parts) return [];
  const { job, pod } = parts;
  const where = `${m.kind} ${m.metadata?.name ?? m.metadata?.generateName ?? ''}`;
  const problems: string[] = [];
  if (pod?.restartPolicy !== 'Never' && pod?.restartPolicy !== 'OnFailure') {
    problems.push(`${where}: restartPolicy must be Never or OnFailure in a Job, got ${pod?.restartPolicy ?? 'none (Always)'}`);
  }
  if (job?.podFailurePolicy && pod?.restartPolicy !== 'Never') problems.push(`${where}: podFailurePolicy needs restartPolicy Never`);
  const settings = drainSettingsOf(where, pod, all, problems);
  if (!settings) return problems; // e.g. the migrate Job: no drain settings to check
  const { deadline, grace } = settings;

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

/**
 * An always-on worker: a Deployment whose kubelet restarts each drain as it
 * ends. Its drain must run long enough for a restart not to wait
 * (BACKOFF_RESET_S), and an idle queue must not end it early.
 */
function workerProblems(m: Manifest, all: Manifest[]): string[] {
  const where = `Deployment ${m.metadata?.name ?? ''}`;
  const pod = podOf(m);
  const problems: string[] = [];
  if ((pod?.restartPolicy ?? 'Always') !== 'Always') {
    problems.push(`${where}: restartPolicy must be Always in a Deployment, got ${pod.restartPolicy}`);
  }
  const labels = m.spec?.template?.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(m.spec?.selector?.matchLabels ?? {})) {
    if (labels[k] !== v) problems.push(`${where}: selector ${k}=${String(v)} does not match the pod template's labels`);
  }
  const settings = drainSettingsOf(where, pod, all, problems);
  if (!settings) return [...problems, `${where}: its container does not run pgdrain drain`];
  const { deadline, linger } = settings;
  if (deadline <= BACKOFF_RESET_S) {
    problems.push(`${where}: deadline ${deadline} must exceed ${BACKOFF_RESET_S} s, or the kubelet delays each restart ` +
      'longer (CrashLoopBackOff)');
  }
  if (linger < deadline) {
    problems.push(`${where}: linger ${linger} must be at least the deadline ${deadline}, or an idle queue ends the drain early ` +
      'and the kubelet restarts it');
  }
  return problems;
}

/**
 * The drain settings of a pod's first container, checked (unknown
 * variables, a missing DATABASE_URL or PGDRAIN_TASKS, a termination grace
 * shorter than the drain's stop may take); undefined when it runs no drain.
 */
function drainSettingsOf(where: string, pod: any, all: Manifest[], problems: string[]):
    { deadline: number; grace: number; linger: number } | undefined {
  const container = pod?.containers?.[0];
  const args: string[] = [...(container?.command ?? []), ...(container?.args ?? [])];
  if (!args.includes('drain')) return undefined;

  const env = containerEnv(container, all);
  const known = new Set(DRAIN_ENV.map(([, variable]) => variable));
  for (const name of Object.keys(env)) {
    if (name.startsWith('PGDRAIN_') && !known.has(name)) problems.push(`${where}: unknown setting ${name}`);
  }
  if (!env.DATABASE_URL) problems.push(`${where}: no DATABASE_URL (the drain would use an embedded database in the pod)`);
  if (!env.PGDRAIN_TASKS) problems.push(`${where}: no PGDRAIN_TASKS`);
  const deadline = Number(env.PGDRAIN_DEADLINE_SECONDS ?? 300);
  const grace = Number(env.PGDRAIN_GRACE_SECONDS ?? 10);
  const linger = Number(env.PGDRAIN_LINGER_SECONDS ?? 0);
  const overrun = Number(env.PGDRAIN_OVERRUN_SECONDS ?? 5);

  // After its SIGTERM a drain may take its grace, then its overrun (a database that stopped answering), then
  // the report: the kubelet's SIGKILL comes after that (deploy/worker-loop.sh's own, at the same + 5 s, too).
  const termination = pod.terminationGracePeriodSeconds ?? 30;
  if (termination < grace + overrun + SETTLE_MARGIN_S) {
    problems.push(`${where}: terminationGracePeriodSeconds ${termination} must be at least the drain's grace ${grace} + ` +
      `overrun ${overrun} + ${SETTLE_MARGIN_S} s to give back what still runs before SIGKILL`);
  }
  return { deadline, grace, linger };
}
