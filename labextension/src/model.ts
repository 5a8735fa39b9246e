/**
 * The shapes the server extension answers with, and the pure functions that turn them into what
 * the sidebar shows. No JupyterLab imports here: jest tests this module as it is.
 */

export interface IProfile {
  name: string;
  backend: string;
  source: string;
  description: string;
}

export interface IProfiles {
  profiles: IProfile[];
  folder: string;
}

export interface IProgress {
  stage?: string;
  message?: string;
  done?: number | null;
  total?: number | null;
}

export interface ICluster {
  name: string;
  cluster_id: string;
  backend: string;
  profile: string;
  status: string;
  display_status: string;
  progress: IProgress | null;
  scheduler_address: string | null;
  dashboard_link: string | null;
  workers: number;
  reported_workers: number | null;
  hourly_cost: number;
  adaptive: { minimum: number; maximum: number } | null;
  owner: string;
  created_at: number;
  age: number;
  note: string;
  operation: string | null;
}

export interface IOperation {
  id: string;
  kind: string;
  cluster: string;
  state: 'running' | 'succeeded' | 'failed' | 'cancelled';
  started_at: number;
  ended_at: number | null;
  last_event: IEvent | null;
  error: string | null;
  events?: IEvent[];
}

export interface IEvent {
  seq: number;
  stage: string;
  message: string;
  done: number | null;
  total: number | null;
  time: number;
}

/** Resources that carry a cluster's tags but that nothing proves belong to a cluster: never acted on. */
export interface IUnverified {
  backend: string;
  cluster_id: string;
  name: string;
  owner: string;
  scope: string;
  resources: string[];
  reason: string;
}

export interface IClusters {
  clusters: ICluster[];
  searched: string[];
  failed: string[];
  others: { [owner: string]: number };
  unverified?: IUnverified[];
  operations: IOperation[];
}

/** One line about unverified resources: what they claim, and why they are not believed. */
export function describeUnverified(entry: IUnverified): string {
  const claim = `tagged as ${entry.name || '?'} (${entry.cluster_id || 'no id'}) of ${entry.owner || 'no owner'}`;
  return `${entry.resources.join(', ')}: ${claim}; ${entry.reason}`;
}

export interface IPlannedResource {
  kind: string;
  role: string;
  count: number;
  detail: string;
  hourly_cost: number;
  spot_hourly_cost: number | null;
}

export interface IPlan {
  name: string;
  backend: string;
  profile: string;
  workers: number;
  threads_per_worker: number;
  memory_per_worker: number | null;
  resources: IPlannedResource[];
  notes: string[];
  hourly_cost: number;
  spot_hourly_cost: number;
}

export interface IStarted {
  operation: IOperation;
  cluster: string;
  follow: string;
}

/** What a launch asks for. */
export interface ILaunch {
  profile: string;
  name?: string;
  workers?: number;
  overrides?: { [key: string]: unknown };
}

/** Cost per hour, as the other faces print it. */
export function formatCost(usd: number): string {
  if (!usd) {
    return 'nothing per hour';
  }
  return usd < 0.01 ? '< $0.01/hour' : `$${usd.toFixed(usd < 1 ? 4 : 2)}/hour`;
}

/** A duration in seconds as "42s", "5m", "3h 12m", "2d 4h". */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m}m`;
  }
  const h = Math.floor(m / 60);
  if (h < 24) {
    return `${h}h ${m % 60}m`;
  }
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** How far along a starting cluster is, 0..1, or null when unknown. */
export function progressFraction(progress: IProgress | null): number | null {
  if (!progress || progress.total === null || progress.total === undefined || progress.total <= 0) {
    return null;
  }
  return Math.min(1, Math.max(0, (progress.done ?? 0) / progress.total));
}

/**
 * What the scheduler reports, never the number asked for as if it were there: "1 worker",
 * "2/3 workers" (reported of planned), "?/3 workers" (not reported: starting, unreachable),
 * "no workers" (dead), "adaptive 1-4 (2 now)".
 */
export function formatWorkers(cluster: ICluster): string {
  const planned = cluster.workers;
  const reported = cluster.reported_workers;
  const noun = (n: number) => (n === 1 ? 'worker' : 'workers');
  if (cluster.status === 'dead' || cluster.status === 'stopped') {
    return 'no workers';
  }
  const now = reported ?? '?';
  if (cluster.adaptive) {
    return `adaptive ${cluster.adaptive.minimum}-${cluster.adaptive.maximum} (${now} now)`;
  }
  if (reported !== planned) {
    return `${now}/${planned} ${noun(planned)}`;
  }
  return `${planned} ${noun(planned)}`;
}

export function isStarting(cluster: ICluster): boolean {
  return cluster.status === 'starting';
}

export function isRunning(cluster: ICluster): boolean {
  return cluster.status === 'running';
}

/** The cell "Use in notebook" inserts. */
export function attachCode(name: string): string {
  return `%load_ext dask_aws_magic\n%dask_cluster attach ${name}`;
}

/** Only Python kernels can run the magic. */
export function isPythonKernel(language: string | undefined | null): boolean {
  return (language ?? '').toLowerCase() === 'python';
}

/** Why a cluster name would be refused (the core checks again), or null when it is fine or empty. */
export function checkName(name: string): string | null {
  if (!name) {
    return null;
  }
  return /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/.test(name)
    ? null
    : 'A name is 1-40 lowercase letters, digits or dashes, starting and ending with a letter or digit.';
}

/** One line of a plan: what will be created and what it costs. */
export function planSummary(plan: IPlan): string {
  const parts = plan.resources.map(r => `${r.count} × ${r.detail || r.kind} (${r.role})`);
  return `${parts.join(', ')}: ${formatCost(plan.hourly_cost)}`;
}

/** One line per planned resource: "2 × m6i.large (worker): $0.1920/hour". */
export function planLines(plan: IPlan): string[] {
  return plan.resources.map(r => {
    const what = (r.detail || r.kind).split(', ')[0];
    const cost = r.hourly_cost ? `: ${formatCost(r.hourly_cost)}` : '';
    return `${r.count} × ${what} (${r.role})${cost}`;
  });
}

/** "Cost: $0.23/hour on-demand, $0.07/hour with spot" (spot only when it differs). */
export function planCost(plan: IPlan): string {
  const spot = plan.spot_hourly_cost && plan.spot_hourly_cost !== plan.hourly_cost
    ? `, ${formatCost(plan.spot_hourly_cost)} with spot` : '';
  return `Cost: ${formatCost(plan.hourly_cost)}${plan.hourly_cost ? ' on-demand' : ''}${spot}`;
}

/** The text of an event as the other faces render it: "boot: instances 2/3 running". */
export function eventLine(event: IEvent): string {
  return `${event.stage}: ${event.message}`;
}

/** Dashboard plots offered as lab panels: [title, path]. */
export const DASHBOARD_PLOTS: ReadonlyArray<[string, string]> = [
  ['Task Stream', 'individual-task-stream'],
  ['Progress', 'individual-progress'],
  ['Workers Memory', 'individual-workers-memory'],
  ['Cluster Memory', 'individual-cluster-memory'],
  ['Task Processing', 'individual-processing'],
  ['CPU', 'individual-cpu'],
  ['Graph', 'individual-graph'],
  ['Workers', 'individual-workers']
];
