/**
 * The server extension's REST API, over any fetch-like function (JupyterLab's ServerConnection in
 * the extension, a fake in the tests).
 */

import {
  IClusters,
  ICluster,
  ILaunch,
  IOperation,
  IPlan,
  IProfile,
  IProfiles,
  IStarted
} from './model';

export const NAMESPACE = 'dask-aws-magic';

/** What a fetch answers, as far as this module needs. */
export interface IResponse {
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}

/** Sends ``init`` to ``path`` (relative to the API root, e.g. "clusters/x"). */
export type Fetcher = (path: string, init: { method: string; body?: string }) => Promise<IResponse>;

/** An answer that is not a success, with the server's one-paragraph message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The server answered, but not with our API: the server extension is not installed or enabled. */
export class ExtensionMissing extends ApiError {
  constructor(status: number) {
    super(
      status,
      'The dask-aws-magic server extension is not running in this Jupyter server. Install the package ' +
        'in the environment that runs JupyterLab (pip install dask-aws-magic), check it with ' +
        '`jupyter server extension list`, then restart JupyterLab.'
    );
    this.name = 'ExtensionMissing';
  }
}

export class DaskAwsMagicApi {
  constructor(private readonly fetcher: Fetcher) {}

  profiles(): Promise<IProfiles> {
    return this.call('GET', 'profiles');
  }

  profile(name: string): Promise<IProfile & { data: unknown }> {
    return this.call('GET', `profiles/${encodeURIComponent(name)}`);
  }

  plan(request: ILaunch): Promise<IPlan> {
    const { profile, ...body } = request;
    return this.call('POST', `profiles/${encodeURIComponent(profile)}/plan`, body);
  }

  clusters(): Promise<IClusters> {
    return this.call('GET', 'clusters');
  }

  cluster(name: string): Promise<ICluster> {
    return this.call('GET', `clusters/${encodeURIComponent(name)}`);
  }

  launch(request: ILaunch): Promise<IStarted> {
    return this.call('POST', 'clusters', request);
  }

  scale(name: string, workers: number): Promise<IStarted> {
    return this.call('PATCH', `clusters/${encodeURIComponent(name)}`, { workers });
  }

  adapt(name: string, minimum: number, maximum: number): Promise<ICluster> {
    return this.call('PATCH', `clusters/${encodeURIComponent(name)}`, { adapt: { minimum, maximum } });
  }

  shutDown(name: string): Promise<IStarted> {
    return this.call('DELETE', `clusters/${encodeURIComponent(name)}`);
  }

  logs(name: string): Promise<{ name: string; logs: { [source: string]: string } }> {
    return this.call('GET', `clusters/${encodeURIComponent(name)}/logs`);
  }

  operation(id: string, since = 0): Promise<IOperation> {
    return this.call('GET', `operations/${encodeURIComponent(id)}?since=${since}`);
  }

  cancel(id: string): Promise<IOperation & { cancelled: boolean }> {
    return this.call('POST', `operations/${encodeURIComponent(id)}/cancel`, {});
  }

  /** The dashboard path of ``name`` through the server's proxy, relative to the server's base URL (it
   * redirects to the cluster's capability path; the server sandboxes every proxied page). */
  static dashboardPath(name: string, page = 'status'): string {
    return `${NAMESPACE}/dashboard/${encodeURIComponent(name)}/${page}`;
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: IResponse;
    try {
      response = await this.fetcher(path, {
        method,
        body: body === undefined ? undefined : JSON.stringify(body)
      });
    } catch (error) {
      throw new ApiError(0, `The Jupyter server did not answer: ${error}`);
    }
    const text = await response.text();
    const isJson = (response.headers.get('Content-Type') ?? '').includes('application/json');
    let data: any = null;
    if (isJson && text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      if (response.status === 404 && (data === null || data.message === undefined || /^Not Found$/.test(data.message))) {
        throw new ExtensionMissing(response.status);
      }
      throw new ApiError(response.status, data?.message ?? `${response.status}: ${text.slice(0, 200)}`);
    }
    return data as T;
  }
}

/** Follows an operation until it ends, handing each new event to ``onEvent``. */
export async function follow(
  api: DaskAwsMagicApi,
  id: string,
  onEvent: (op: IOperation) => void,
  sleep: (ms: number) => Promise<void> = ms => new Promise(r => setTimeout(r, ms)),
  intervalMs = 500
): Promise<IOperation> {
  let seen = 0;
  for (;;) {
    const op = await api.operation(id, seen);
    const events = op.events ?? [];
    if (events.length) {
      seen = events[events.length - 1].seq;
    }
    onEvent(op);
    if (op.state !== 'running') {
      return op;
    }
    await sleep(intervalMs);
  }
}

/** What a proxied dashboard page may do in a Plots pane: run its scripts, open popups and downloads,
 * never act as Jupyter's origin (no allow-same-origin: the Jupyter API is one fetch away). */
export const DASHBOARD_SANDBOX = ['allow-scripts', 'allow-popups', 'allow-downloads'] as const;
