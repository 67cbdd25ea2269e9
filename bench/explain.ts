// Plans of the statements PL/pgSQL functions run inside, captured with
// auto_explain (log_nested_statements) at NOTICE level, so they reach the
// client that made the call. Needs a superuser session (LOAD / startup options).

/** One nested or top-level statement's plan as auto_explain reported it. */
export interface CapturedPlan {
  /** First line of the statement text. */
  statement: string;
  /** The whole NOTICE: duration, query text and plan. */
  text: string;
}

/** The settings that make a session report every plan; as SQL and as startup options. */
const SETTINGS = {
  'auto_explain.log_min_duration': '0',
  'auto_explain.log_nested_statements': 'on',
  'auto_explain.log_level': 'notice',
  'auto_explain.log_analyze': 'on',
  'auto_explain.log_timing': 'on',
  'auto_explain.log_buffers': 'on',
  client_min_messages: 'notice',
};

/** libpq `options` for a pool whose every session reports its plans. */
export const EXPLAIN_OPTIONS = ['-c session_preload_libraries=auto_explain',
  ...Object.entries(SETTINGS).map(([k, v]) => `-c ${k}=${v}`)].join(' ');

interface NoticeSource {
  query(text: string): Promise<unknown>;
  on(event: 'notice', listener: (msg: { message?: string }) => void): unknown;
  off(event: 'notice', listener: (msg: { message?: string }) => void): unknown;
}

/** Turns plan reporting on for one client session. */
export async function explainSession(client: NoticeSource): Promise<void> {
  await client.query(`load 'auto_explain'`);
  for (const [k, v] of Object.entries(SETTINGS)) await client.query(`set ${k} = '${v}'`);
}

/** Collects the plans reported on `client` while fn runs. */
export async function capturePlans(client: NoticeSource, fn: () => Promise<void>): Promise<CapturedPlan[]> {
  const plans: CapturedPlan[] = [];
  const listener = (msg: { message?: string }) => {
    const plan = toPlan(msg.message);
    if (plan) plans.push(plan);
  };
  client.on('notice', listener);
  try {
    await fn();
  } finally {
    client.off('notice', listener);
  }
  return plans;
}

/** A NOTICE as a plan, or undefined when it is not auto_explain's. */
export function toPlan(message: string | undefined): CapturedPlan | undefined {
  if (!message || !message.includes('Query Text:')) return undefined;
  const statement = /Query Text:\s*(.*)/.exec(message)?.[1]?.trim() ?? '';
  return { statement, text: message };
}

/** Every scan node of a plan: "Index Scan using job_queue_pkey on job_queue". */
export function scans(plan: CapturedPlan): string[] {
  const out: string[] = [];
  const re = /((?:Parallel )?(?:Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan|Bitmap Index Scan)(?: Backward)?(?: using \S+)? on \S+)/g;
  for (const m of plan.text.matchAll(re)) out.push(m[1]!);
  return out;
}

/** The scans that read a whole table of the queue (jobs.job_queue or jobs.job). */
export function seqScansOfQueue(plans: readonly CapturedPlan[]): string[] {
  return plans.flatMap((p) => scans(p).filter((s) => /Seq Scan on (job_queue|job)$/.test(s))
    .map((s) => `${s} in: ${p.statement}`));
}
