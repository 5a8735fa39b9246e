import {
  ApiError, DASHBOARD_SANDBOX, DaskAwsMagicApi, ExtensionMissing, Fetcher, follow, IResponse
} from '../src/request';

type Call = { path: string; method: string; body?: string };

function fake(answers: Array<[number, unknown, string?]>): { fetcher: Fetcher; calls: Call[] } {
  const calls: Call[] = [];
  const fetcher: Fetcher = async (path, init) => {
    calls.push({ path, ...init });
    const [status, data, type] = answers.shift() ?? [500, { message: 'no more answers' }];
    const response: IResponse = {
      ok: status >= 200 && status < 300,
      status,
      headers: { get: () => type ?? 'application/json; charset=UTF-8' },
      text: async () => (typeof data === 'string' ? data : JSON.stringify(data))
    };
    return response;
  };
  return { fetcher, calls };
}

describe('DaskAwsMagicApi', () => {
  it('sends each action to its route with its verb and body', async () => {
    const { fetcher, calls } = fake(Array(11).fill([200, {}]));
    const api = new DaskAwsMagicApi(fetcher);
    await api.profiles();
    await api.plan({ profile: 'big one', name: 'x', workers: 3 });
    await api.clusters();
    await api.cluster('x');
    await api.launch({ profile: 'local', name: 'x', workers: 2, overrides: { 'worker.nthreads': 2 } });
    await api.scale('x', 4);
    await api.adapt('x', 1, 5);
    await api.shutDown('x');
    await api.logs('x');
    await api.operation('op-1', 3);
    await api.cancel('op-1');
    expect(calls.map(c => `${c.method} ${c.path}`)).toEqual([
      'GET profiles', 'POST profiles/big%20one/plan', 'GET clusters', 'GET clusters/x', 'POST clusters',
      'PATCH clusters/x', 'PATCH clusters/x', 'DELETE clusters/x', 'GET clusters/x/logs',
      'GET operations/op-1?since=3', 'POST operations/op-1/cancel'
    ]);
    expect(JSON.parse(calls[1].body!)).toEqual({ name: 'x', workers: 3 });
    expect(JSON.parse(calls[4].body!)).toEqual({ profile: 'local', name: 'x', workers: 2, overrides: { 'worker.nthreads': 2 } });
    expect(JSON.parse(calls[5].body!)).toEqual({ workers: 4 });
    expect(JSON.parse(calls[6].body!)).toEqual({ adapt: { minimum: 1, maximum: 5 } });
    expect(calls[0].body).toBeUndefined();
  });

  it("raises the server's message on a 400 and a 404 of ours", async () => {
    const { fetcher } = fake([
      [400, { message: "The field 'workers' must be a whole number >= 1, not 0.", status: 400 }],
      [404, { message: "There is no cluster named 'ghost'", status: 404 }]
    ]);
    const api = new DaskAwsMagicApi(fetcher);
    await expect(api.launch({ profile: 'local', workers: 0 })).rejects.toThrow("'workers'");
    const error = await api.cluster('ghost').catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).not.toBeInstanceOf(ExtensionMissing);
    expect(error.status).toBe(404);
  });

  it('says the server extension is missing when the route is not ours', async () => {
    const { fetcher } = fake([[404, '<html>404 : Not Found</html>', 'text/html']]);
    const error = await new DaskAwsMagicApi(fetcher).profiles().catch(e => e);
    expect(error).toBeInstanceOf(ExtensionMissing);
    expect(error.message).toMatch(/jupyter server extension list/);
  });

  it('reports a server that does not answer', async () => {
    const api = new DaskAwsMagicApi(async () => {
      throw new TypeError('Failed to fetch');
    });
    const error = await api.clusters().catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(0);
  });

  it('builds dashboard paths through the proxy', () => {
    expect(DaskAwsMagicApi.dashboardPath('x')).toBe('dask-aws-magic/dashboard/x/status');
    expect(DaskAwsMagicApi.dashboardPath('x', 'individual-task-stream')).toBe(
      'dask-aws-magic/dashboard/x/individual-task-stream'
    );
  });
});

describe('follow', () => {
  it('asks for the events after the last seen until the operation ends', async () => {
    const event = (seq: number, stage: string) => ({ seq, stage, message: stage, done: null, total: null, time: 0 });
    const op = (state: string, events: unknown[]) => ({ id: 'op-1', kind: 'up', cluster: 'x', state, events });
    const { fetcher, calls } = fake([
      [200, op('running', [event(1, 'plan'), event(2, 'launch')])],
      [200, op('running', [])],
      [200, op('succeeded', [event(3, 'boot'), event(4, 'succeeded')])]
    ]);
    const seen: string[] = [];
    const final = await follow(new DaskAwsMagicApi(fetcher), 'op-1',
      o => seen.push(...(o.events ?? []).map(e => e.stage)), async () => undefined);
    expect(final.state).toBe('succeeded');
    expect(seen).toEqual(['plan', 'launch', 'boot', 'succeeded']);
    expect(calls.map(c => c.path)).toEqual([
      'operations/op-1?since=0', 'operations/op-1?since=2', 'operations/op-1?since=2'
    ]);
  });
});

describe('dashboard panes', () => {
  it('run proxied pages sandboxed, never as Jupyter\'s origin', () => {
    expect(DASHBOARD_SANDBOX).toContain('allow-scripts');
    expect(DASHBOARD_SANDBOX).not.toContain('allow-same-origin');
    expect(DASHBOARD_SANDBOX).not.toContain('allow-top-navigation');
    expect(DASHBOARD_SANDBOX).not.toContain('popups-to-escape-sandbox');
  });
});
