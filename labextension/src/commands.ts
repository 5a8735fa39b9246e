/** Every sidebar action as a command (so each is in the palette), with the dialogs they need. */

import { JupyterFrontEnd } from '@jupyterlab/application';
import { Clipboard, Dialog, InputDialog, MainAreaWidget, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { DASHBOARD_PLOTS } from './model';
import { useInNotebook } from './notebook';
import { dashboardUrl, logsPanel, plotPanel } from './panels';
import { COMMANDS, DaskAwsSidebar } from './sidebar';

export interface ICommandContext {
  app: JupyterFrontEnd;
  sidebar: DaskAwsSidebar;
  tracker: INotebookTracker | null;
  runOnInsert: () => boolean;
}

type Args = { [key: string]: any };

async function pickCluster(ctx: ICommandContext, args: Args, running = true): Promise<string | null> {
  if (typeof args.cluster === 'string' && args.cluster) {
    return args.cluster;
  }
  const names = (ctx.sidebar.clusters?.clusters ?? []).filter(c => !running || c.status === 'running').map(c => c.name);
  if (!names.length) {
    void showErrorMessage('No cluster', 'There is no cluster to act on: launch one from the sidebar first.');
    return null;
  }
  const answer = await InputDialog.getItem({ title: 'Which cluster?', items: names });
  return answer.button.accept ? answer.value : null;
}

async function guard(title: string, work: () => Promise<unknown>): Promise<void> {
  try {
    await work();
  } catch (error) {
    void showErrorMessage(title, (error as Error).message ?? String(error));
  }
}

class AdaptBody extends Widget implements Dialog.IBodyWidget<{ minimum: number; maximum: number }> {
  private readonly minimum = h('input', { class: 'jp-mod-styled dam-adapt-min', type: 'number', min: 0, value: 0 });
  private readonly maximum = h('input', { class: 'jp-mod-styled dam-adapt-max', type: 'number', min: 1, value: 4 });

  constructor() {
    super();
    this.node.append(h('label', {}, 'Minimum workers ', this.minimum), h('label', {}, 'Maximum workers ', this.maximum));
    this.addClass('dam-adapt-body');
  }

  getValue(): { minimum: number; maximum: number } {
    return { minimum: Number(this.minimum.value), maximum: Number(this.maximum.value) };
  }
}

function openPanel(ctx: ICommandContext, panel: MainAreaWidget): void {
  const existing = Array.from(ctx.app.shell.widgets('main')).find(w => w.id === panel.id);
  if (existing) {
    panel.dispose();
    ctx.app.shell.activateById(existing.id);
    return;
  }
  ctx.app.shell.add(panel, 'main', { mode: 'split-right' });
  ctx.app.shell.activateById(panel.id);
}

export function addCommands(ctx: ICommandContext): void {
  const { app, sidebar } = ctx;
  const api = sidebar.api;
  const add = (id: string, label: string, execute: (args: Args) => Promise<unknown> | void, caption = '') =>
    app.commands.addCommand(id, { label, caption: caption || label, execute: args => execute(args as Args) });

  add(COMMANDS.open, 'Dask Clusters: Show the Sidebar', () => app.shell.activateById(sidebar.id));
  add(COMMANDS.refresh, 'Dask Clusters: Refresh', () => sidebar.reloadProfiles());

  add(COMMANDS.launch, 'Dask Clusters: Launch a Cluster', args => guard('Launch failed', async () => {
    let profile: string | null = args.profile ?? null;
    if (!profile) {
      const names = (sidebar.profiles?.profiles ?? []).map(p => p.name);
      const answer = await InputDialog.getItem({ title: 'Launch from which profile?', items: names });
      profile = answer.button.accept ? answer.value : null;
    }
    if (!profile) {
      return;
    }
    const started = await api.launch({ profile, name: args.name || undefined, workers: args.workers || undefined });
    await sidebar.track(started.operation.id, `launch ${started.cluster}`);
  }));

  add(COMMANDS.cancel, 'Dask Clusters: Cancel a Launch', args => guard('Cancel failed', async () => {
    const name = await pickCluster(ctx, args, false);
    const op = name ? sidebar.findCluster(name)?.operation : null;
    if (!name) {
      return;
    }
    if (!op) {
      throw new Error(`${name} is not being launched from this JupyterLab; use Shut down instead.`);
    }
    await api.cancel(op);
    sidebar.setMessage(`cancelling ${name}: what was made is being removed`);
    void sidebar.poll.refresh();
  }));

  add(COMMANDS.dashboard, 'Dask Clusters: Open the Dashboard in a Browser Tab', args => guard('Dashboard', async () => {
    const name = await pickCluster(ctx, args);
    if (name) {
      window.open(dashboardUrl(name, 'status'), '_blank', 'noopener,noreferrer');
    }
  }));

  add(COMMANDS.plots, 'Dask Clusters: Open a Dashboard Plot', args => guard('Dashboard plot', async () => {
    const name = await pickCluster(ctx, args);
    if (!name) {
      return;
    }
    let page: string | undefined = args.plot;
    if (!page) {
      const answer = await InputDialog.getItem({ title: `Which plot of ${name}?`, items: DASHBOARD_PLOTS.map(p => p[0]) });
      page = answer.button.accept ? DASHBOARD_PLOTS.find(p => p[0] === answer.value)?.[1] : undefined;
    }
    const title = DASHBOARD_PLOTS.find(p => p[1] === page)?.[0] ?? page;
    if (page && title) {
      openPanel(ctx, plotPanel(name, title, page));
    }
  }));

  add(COMMANDS.scale, 'Dask Clusters: Scale', args => guard('Scale failed', async () => {
    const name = await pickCluster(ctx, args);
    if (!name) {
      return;
    }
    let workers: number | null = typeof args.workers === 'number' ? args.workers : null;
    if (workers === null) {
      const current = sidebar.findCluster(name)?.workers ?? 1;
      const answer = await InputDialog.getNumber({ title: `Workers of ${name}`, value: current });
      workers = answer.button.accept ? answer.value : null;
    }
    if (workers !== null) {
      const started = await api.scale(name, workers);
      await sidebar.track(started.operation.id, `scale ${name}`);
    }
  }));

  add(COMMANDS.adapt, 'Dask Clusters: Adapt', args => guard('Adapt failed', async () => {
    const name = await pickCluster(ctx, args);
    if (!name) {
      return;
    }
    let bounds = typeof args.maximum === 'number' ? { minimum: args.minimum ?? 0, maximum: args.maximum } : null;
    if (!bounds) {
      const answer = await showDialog({ title: `Adaptive scaling of ${name}`, body: new AdaptBody(),
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Adapt' })] });
      bounds = answer.button.accept ? answer.value : null;
    }
    if (bounds) {
      await api.adapt(name, bounds.minimum, bounds.maximum);
      sidebar.setMessage(`${name} adapts between ${bounds.minimum} and ${bounds.maximum} workers`);
      void sidebar.poll.refresh();
    }
  }));

  add(COMMANDS.logs, 'Dask Clusters: Show the Logs', args => guard('Logs', async () => {
    const name = await pickCluster(ctx, args, false);
    if (name) {
      openPanel(ctx, logsPanel(api, name));
    }
  }));

  add(COMMANDS.shutDown, 'Dask Clusters: Shut Down', args => guard('Shut down failed', async () => {
    const name = await pickCluster(ctx, args, false);
    if (!name) {
      return;
    }
    const answer = await showDialog({
      title: `Shut down ${name}?`,
      body: 'Its scheduler and workers stop and everything it created is removed; work in progress is lost.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Shut down' })]
    });
    if (answer.button.accept) {
      const started = await api.shutDown(name);
      await sidebar.track(started.operation.id, `shut down ${name}`);
    }
  }));

  add(COMMANDS.useInNotebook, 'Dask Clusters: Use in Notebook', args => guard('Use in notebook', async () => {
    const name = await pickCluster(ctx, args);
    if (!name) {
      return;
    }
    if (!ctx.tracker) {
      throw new Error('The notebook extension is not available.');
    }
    sidebar.setMessage(await useInNotebook(ctx.tracker, name, ctx.runOnInsert()));
  }), 'Insert %dask_cluster attach NAME into the active notebook');

  add(COMMANDS.openProfiles, 'Dask Clusters: Open the Profiles Folder', () => guard('Profiles folder', async () => {
    const folder = sidebar.profiles?.folder;
    if (!folder) {
      return;
    }
    const root = PageConfig.getOption('serverRoot').replace(/\/$/, '');
    if (root && (folder === root || folder.startsWith(`${root}/`))) {
      const relative = folder.slice(root.length + 1);
      await app.commands.execute('filebrowser:go-to-path', { path: `/${relative}` });
      return;
    }
    Clipboard.copyToSystem(folder);
    await showDialog({
      title: 'Profiles folder',
      body: new Widget({ node: h('div', { class: 'dam-folder-dialog' },
        h('p', {}, 'Profiles are YAML files in this folder (its path is now in your clipboard):'),
        h('pre', {}, folder),
        h('p', {}, 'It is outside the folder JupyterLab serves: edit them in a terminal, or set ' +
          'DASK_AWS_MAGIC_HOME to a folder inside it.')) }),
      buttons: [Dialog.okButton()]
    });
  }));
}
