/** Lab panels: a cluster's logs, and one dashboard plot (through the server's proxy). */

import { IFrame, MainAreaWidget, ToolbarButton } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { refreshIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { daskAwsIcon } from './icon';
import { DASHBOARD_SANDBOX, DaskAwsMagicApi } from './request';

/** The absolute URL of a page of the cluster's dashboard through the Jupyter server. */
export function dashboardUrl(name: string, page = 'status'): string {
  return URLExt.join(PageConfig.getBaseUrl(), DaskAwsMagicApi.dashboardPath(name, page));
}

class LogsView extends Widget {
  constructor(
    private readonly api: DaskAwsMagicApi,
    private readonly cluster: string
  ) {
    super();
    this.addClass('dam-logs-view');
  }

  async load(): Promise<void> {
    this.node.replaceChildren(h('div', { class: 'dam-empty' }, 'Loading…'));
    try {
      const { logs } = await this.api.logs(this.cluster);
      const sources = Object.entries(logs);
      this.node.replaceChildren(
        ...(sources.length ? [] : [h('div', { class: 'dam-empty' }, 'No logs.')]),
        ...sources.map(([source, text]) =>
          h('section', { class: 'dam-log' }, h('h3', {}, source), h('pre', {}, text || '(empty)')))
      );
    } catch (error) {
      this.node.replaceChildren(h('div', { class: 'dam-error' }, String((error as Error).message ?? error)));
    }
  }
}

export function logsPanel(api: DaskAwsMagicApi, cluster: string): MainAreaWidget<LogsView> {
  const content = new LogsView(api, cluster);
  const panel = new MainAreaWidget({ content });
  panel.id = `dask-aws-magic-logs-${cluster}`;
  panel.title.label = `Logs: ${cluster}`;
  panel.title.icon = daskAwsIcon;
  panel.title.closable = true;
  panel.toolbar.addItem('refresh', new ToolbarButton({
    icon: refreshIcon, tooltip: 'Reload the logs', onClick: () => void content.load()
  }));
  void content.load();
  return panel;
}

export function plotPanel(cluster: string, title: string, page: string): MainAreaWidget<IFrame> {
  const content = new IFrame({ sandbox: [...DASHBOARD_SANDBOX] });
  content.url = dashboardUrl(cluster, page);
  content.addClass('dam-plot');
  const panel = new MainAreaWidget({ content });
  panel.id = `dask-aws-magic-plot-${cluster}-${page}`;
  panel.title.label = `${title} (${cluster})`;
  panel.title.icon = daskAwsIcon;
  panel.title.closable = true;
  return panel;
}
