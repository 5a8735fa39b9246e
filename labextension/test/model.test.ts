import {
  attachCode,
  checkName,
  describeUnverified,
  eventLine,
  formatAge,
  formatCost,
  formatWorkers,
  ICluster,
  isPythonKernel,
  planCost,
  planLines,
  planSummary,
  progressFraction
} from '../src/model';

const cluster = (over: Partial<ICluster> = {}): ICluster => ({
  name: 'local', cluster_id: 'dam-000000000000', backend: 'local', profile: 'local', status: 'running',
  display_status: 'running', progress: null, scheduler_address: 'tls://127.0.0.1:1', dashboard_link: null,
  workers: 2, reported_workers: 2, hourly_cost: 0, adaptive: null, owner: 'local:me', created_at: 0, age: 5,
  note: '', operation: null, ...over
});

describe('formatting', () => {
  it('prints costs per hour', () => {
    expect(formatCost(0)).toBe('nothing per hour');
    expect(formatCost(0.004)).toBe('< $0.01/hour');
    expect(formatCost(0.1664)).toBe('$0.1664/hour');
    expect(formatCost(12.5)).toBe('$12.50/hour');
  });

  it('prints ages', () => {
    expect(formatAge(-3)).toBe('0s');
    expect(formatAge(42.9)).toBe('42s');
    expect(formatAge(300)).toBe('5m');
    expect(formatAge(3 * 3600 + 12 * 60)).toBe('3h 12m');
    expect(formatAge(2 * 86400 + 4 * 3600)).toBe('2d 4h');
  });

  it('prints workers: planned, reported, adaptive', () => {
    expect(formatWorkers(cluster({ workers: 1, reported_workers: 1 }))).toBe('1 worker');
    expect(formatWorkers(cluster({ workers: 3, reported_workers: 2 }))).toBe('2/3 workers');
    expect(formatWorkers(cluster({ workers: 3, reported_workers: null }))).toBe('?/3 workers');
    expect(formatWorkers(cluster({ status: 'unreachable', workers: 3, reported_workers: null }))).toBe('?/3 workers');
    expect(formatWorkers(cluster({ status: 'dead', workers: 3, reported_workers: null }))).toBe('no workers');
    expect(formatWorkers(cluster({ adaptive: { minimum: 1, maximum: 4 }, reported_workers: null }))).toBe(
      'adaptive 1-4 (? now)'
    );
    expect(formatWorkers(cluster({ adaptive: { minimum: 1, maximum: 4 }, reported_workers: 2 }))).toBe(
      'adaptive 1-4 (2 now)'
    );
  });

  it('turns progress into a fraction', () => {
    expect(progressFraction(null)).toBeNull();
    expect(progressFraction({ stage: 'boot', message: 'x' })).toBeNull();
    expect(progressFraction({ done: 2, total: 3 })).toBeCloseTo(2 / 3);
    expect(progressFraction({ done: 5, total: 3 })).toBe(1);
    expect(progressFraction({ done: 1, total: 0 })).toBeNull();
  });

  it('summarises a plan', () => {
    const plan = {
      name: 'x', backend: 'ec2', profile: 'p', workers: 2, threads_per_worker: 2, memory_per_worker: null,
      notes: [], hourly_cost: 0.25, spot_hourly_cost: 0.1,
      resources: [
        { kind: 'instance', role: 'scheduler', count: 1, detail: 't3.medium', hourly_cost: 0.05, spot_hourly_cost: null },
        { kind: 'instance', role: 'worker', count: 2, detail: '', hourly_cost: 0.2, spot_hourly_cost: null }
      ]
    };
    expect(planSummary(plan)).toBe('1 × t3.medium (scheduler), 2 × instance (worker): $0.2500/hour');
    expect(planLines({ ...plan, resources: [{ ...plan.resources[0], detail: 't3.medium (2 vCPU), ami-1' }] })).toEqual([
      '1 × t3.medium (2 vCPU) (scheduler): $0.0500/hour'
    ]);
    expect(planCost(plan)).toBe('Cost: $0.2500/hour on-demand, $0.1000/hour with spot');
    expect(planCost({ ...plan, hourly_cost: 0, spot_hourly_cost: 0 })).toBe('Cost: nothing per hour');
  });

  it('renders events', () => {
    expect(eventLine({ seq: 1, stage: 'boot', message: 'instances 2/3 running', done: 2, total: 3, time: 0 })).toBe(
      'boot: instances 2/3 running'
    );
  });
});

describe('use in notebook', () => {
  it('writes the attach cell', () => {
    expect(attachCode('my-cluster')).toBe('%load_ext dask_aws_magic\n%dask_cluster attach my-cluster');
  });

  it('accepts Python kernels only', () => {
    expect(isPythonKernel('python')).toBe(true);
    expect(isPythonKernel('Python')).toBe(true);
    expect(isPythonKernel('R')).toBe(false);
    expect(isPythonKernel(undefined)).toBe(false);
  });
});

describe('names', () => {
  it('checks names as the core does', () => {
    expect(checkName('')).toBeNull();
    expect(checkName('a')).toBeNull();
    expect(checkName('my-cluster-2')).toBeNull();
    expect(checkName('Bad')).toMatch(/lowercase/);
    expect(checkName('-x')).toMatch(/lowercase/);
    expect(checkName('x-')).toMatch(/lowercase/);
    expect(checkName('a'.repeat(41))).toMatch(/1-40/);
  });
});

describe('unverified resources', () => {
  it('say what they claim and why they are not believed', () => {
    const line = describeUnverified({
      backend: 'ec2', cluster_id: 'dam-0123456789ab', name: 'prod', owner: 'arn:aws:iam::1:user/victim',
      scope: 'us-east-1', resources: ['i-0abc', 'sg-0def'], reason: 'it has no manifest'
    });
    expect(line).toBe('i-0abc, sg-0def: tagged as prod (dam-0123456789ab) of arn:aws:iam::1:user/victim; ' +
      'it has no manifest');
  });
});
