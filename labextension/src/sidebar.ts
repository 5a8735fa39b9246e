/**
 * The left sidebar: profiles (each with a Launch form showing the plan and its cost), and the
 * clusters of the shared registry (status, progress, workers, cost, age, and their actions).
 * Refreshed by a Poll that stands by while the sidebar is hidden.
 */

import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { button, h } from './dom';
import {
  checkName,
  describeUnverified,
  eventLine,
  formatAge,
  formatCost,
  formatWorkers,
  IClusters,
  ICluster,
  IProfile,
  IProfiles,
  isRunning,
  isStarting,
  planCost,
  planLines,
  planSummary,
  progressFraction
} from './model';
import { ApiError, DaskAwsMagicApi, ExtensionMissing, follow } from './request';

/** What the sidebar's buttons do: commands, so each is in the palette too. */
export interface ISidebarActions {
  run(command: string, args: { [key: string]: string | number }): void;
}

export const COMMANDS = {
  launch: 'dask-aws-magic:launch',
  cancel: 'dask-aws-magic:cancel',
  dashboard: 'dask-aws-magic:dashboard',
  plots: 'dask-aws-magic:dashboard-plots',
  scale: 'dask-aws-magic:scale',
  adapt: 'dask-aws-magic:adapt',
  logs: 'dask-aws-magic:logs',
  shutDown: 'dask-aws-magic:shut-down',
  useInNotebook: 'dask-aws-magic:use-in-notebook',
  openProfiles: 'dask-aws-magic:open-profiles-folder',
  refresh: 'dask-aws-magic:refresh',
  open: 'dask-aws-magic:open-sidebar'
};

export class DaskAwsSidebar extends Widget {
  readonly poll: Poll;
  profiles: IProfiles | null = null;
  clusters: IClusters | null = null;
  private error: string | null = null;
  private launching: string | null = null; // the profile whose Launch form is open
  private planTimer = 0;
  private readonly errorNode = h('div', { class: 'dam-error', hidden: true });
  private readonly messageNode = h('div', { class: 'dam-message', hidden: true });
  private readonly profilesNode = h('div', { class: 'dam-profiles' });
  private readonly folderNode = h('div', { class: 'dam-folder' });
  private readonly clustersNode = h('div', { class: 'dam-clusters' });

  constructor(
    readonly api: DaskAwsMagicApi,
    private readonly actions: ISidebarActions,
    intervalMs = 2000
  ) {
    super();
    this.id = 'dask-aws-magic-sidebar';
    this.addClass('dam-sidebar');
    this.title.caption = 'Dask clusters (dask-aws-magic)';
    this.node.append(
      h('header', { class: 'dam-header' }, h('h2', {}, 'Dask clusters')),
      this.errorNode,
      this.messageNode,
      h('h3', {}, 'Clusters'),
      this.clustersNode,
      h('h3', {}, 'Profiles'),
      this.folderNode,
      this.profilesNode
    );
    this.poll = new Poll({
      auto: false,
      factory: () => this.refresh(),
      frequency: { interval: intervalMs, backoff: true, max: 30_000 },
      name: 'dask-aws-magic:clusters',
      standby: () => !this.isVisible || 'when-hidden'
    });
  }

  /** Start polling (once attached). */
  start(): void {
    void this.poll.start();
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.poll.refresh();
  }

  /** Fetch the profiles (once) and the clusters, then render. */
  async refresh(): Promise<void> {
    try {
      if (!this.profiles) {
        this.profiles = await this.api.profiles();
        this.renderProfiles();
      }
      this.clusters = await this.api.clusters();
      this.setError(this.clusters.failed.length ? `Not every place could be searched: ${this.clusters.failed.join(' | ')}` : null);
    } catch (error) {
      this.setError(error instanceof ApiError ? error.message : String(error), error instanceof ExtensionMissing);
      if (error instanceof ExtensionMissing) {
        this.renderClusters();
        throw error; // the poll backs off
      }
    }
    this.renderClusters();
  }

  reloadProfiles(): void {
    this.profiles = null;
    void this.poll.refresh();
  }

  clusterNames(): string[] {
    return (this.clusters?.clusters ?? []).map(c => c.name);
  }

  findCluster(name: string): ICluster | undefined {
    return this.clusters?.clusters.find(c => c.name === name);
  }

  setError(message: string | null, missing = false): void {
    this.error = message;
    this.errorNode.hidden = !message;
    this.errorNode.textContent = message ?? '';
    this.errorNode.classList.toggle('dam-missing', missing);
  }

  /** The line about the latest action (an error stays until the next action: polls do not clear it). */
  setMessage(message: string | null, isError = false): void {
    this.messageNode.hidden = !message;
    this.messageNode.textContent = message ?? '';
    this.messageNode.classList.toggle('dam-message-error', isError);
  }

  /** Follow an operation started from here: its last event in the message line, errors shown. */
  async track(opId: string, what: string): Promise<void> {
    void this.poll.refresh();
    const final = await follow(this.api, opId, op => {
      const last = op.events?.length ? op.events[op.events.length - 1] : op.last_event;
      if (last) {
        this.setMessage(`${what}: ${eventLine(last)}`);
      }
    }).catch(error => {
      this.setMessage(`${what}: ${error.message ?? error}`, true);
      return null;
    });
    if (final) {
      const failed = final.state === 'failed';
      this.setMessage(failed ? `${what} failed: ${final.error}` : `${what}: ${final.state}`, failed);
    }
    void this.poll.refresh();
  }

  // -- rendering ------------------------------------------------------------------------
  private renderProfiles(): void {
    const data = this.profiles;
    this.folderNode.replaceChildren();
    this.profilesNode.replaceChildren();
    if (!data) {
      return;
    }
    this.folderNode.append(
      h('span', { class: 'dam-folder-label' }, 'Profiles folder: '),
      h('code', { class: 'dam-folder-path', title: data.folder }, data.folder),
      button('Open', 'dam-open-folder', () => this.actions.run(COMMANDS.openProfiles, {}))
    );
    for (const profile of data.profiles) {
      this.profilesNode.append(this.profileRow(profile));
    }
  }

  private profileRow(profile: IProfile): HTMLElement {
    const row = h(
      'div',
      { class: `dam-profile dam-profile-${profile.name}`, 'data-profile': profile.name },
      h('div', { class: 'dam-profile-head' },
        h('span', { class: 'dam-profile-name' }, profile.name),
        h('span', { class: 'dam-backend' }, profile.backend),
        button('Launch', 'dam-launch', () => this.toggleForm(profile.name))
      ),
      profile.description ? h('div', { class: 'dam-description' }, profile.description) : null
    );
    if (this.launching === profile.name) {
      row.append(this.launchForm(profile));
    }
    return row;
  }

  private toggleForm(name: string): void {
    this.launching = this.launching === name ? null : name;
    this.renderProfiles();
  }

  private launchForm(profile: IProfile): HTMLElement {
    const nameInput = h('input', { class: 'dam-name jp-mod-styled', placeholder: profile.name, 'aria-label': 'name' });
    const workersInput = h('input', {
      class: 'dam-workers-input jp-mod-styled', type: 'number', min: 1, placeholder: 'from the profile',
      'aria-label': 'workers'
    });
    const planNode = h('div', { class: 'dam-plan' }, 'planning…');
    const submit = button('Launch', 'dam-launch-submit', () => void launch());
    const request = () => {
      const workers = workersInput.value ? Number(workersInput.value) : undefined;
      return { profile: profile.name, name: nameInput.value.trim() || undefined, workers };
    };
    const showPlan = async () => {
      const problem = checkName(nameInput.value.trim());
      if (problem) {
        planNode.textContent = problem;
        planNode.classList.add('dam-bad');
        submit.disabled = true;
        return;
      }
      try {
        const plan = await this.api.plan(request());
        planNode.replaceChildren(
          h('ul', { class: 'dam-plan-summary', title: planSummary(plan) },
            ...planLines(plan).map(line => h('li', {}, line))),
          h('div', { class: 'dam-plan-cost' }, planCost(plan)),
          ...plan.notes.map(note => h('div', { class: 'dam-plan-note' }, note))
        );
        planNode.classList.remove('dam-bad');
        submit.disabled = false;
      } catch (error) {
        planNode.textContent = error instanceof Error ? error.message : String(error);
        planNode.classList.add('dam-bad');
        submit.disabled = true;
      }
    };
    const later = () => {
      window.clearTimeout(this.planTimer);
      this.planTimer = window.setTimeout(() => void showPlan(), 300);
    };
    nameInput.addEventListener('input', later);
    workersInput.addEventListener('input', later);
    const launch = async () => {
      submit.disabled = true;
      this.launching = null;
      this.actions.run(COMMANDS.launch, request() as { [key: string]: string | number });
      this.renderProfiles();
    };
    void showPlan();
    return h('form', { class: 'dam-launch-form', onsubmit: (e: Event) => { e.preventDefault(); void launch(); } },
      h('label', {}, 'Name ', nameInput),
      h('label', {}, 'Workers ', workersInput),
      planNode,
      h('div', { class: 'dam-form-buttons' }, submit, button('Close', 'dam-launch-close', () => this.toggleForm(profile.name)))
    );
  }

  private renderClusters(): void {
    const rows = this.clusters?.clusters ?? [];
    this.clustersNode.replaceChildren();
    if (!this.clusters) {
      this.clustersNode.append(h('div', { class: 'dam-empty' }, this.error ? '' : 'Loading…'));
      return;
    }
    if (!rows.length) {
      this.clustersNode.append(h('div', { class: 'dam-empty' }, 'No clusters yet: launch one from a profile below.'));
    }
    for (const cluster of rows) {
      this.clustersNode.append(this.clusterRow(cluster));
    }
    const others = Object.entries(this.clusters.others);
    if (others.length) {
      this.clustersNode.append(h('div', { class: 'dam-others' },
        `Clusters of other owners not shown: ${others.map(([o, n]) => `${o} (${n})`).join(', ')}`));
    }
    const unverified = this.clusters.unverified ?? [];
    if (unverified.length) {
      this.clustersNode.append(h('div', { class: 'dam-unverified' },
        h('div', {}, 'Unverified: they carry dask-aws-magic tags, but nothing proves they belong to a cluster. ' +
          'Nothing here acts on them; `%dask_cluster down --unverified ID ...` removes them if you know they are yours.'),
        ...unverified.map(entry => h('div', { class: 'dam-unverified-entry' }, describeUnverified(entry)))));
    }
  }

  private clusterRow(cluster: ICluster): HTMLElement {
    const run = (command: string) => () => this.actions.run(command, { cluster: cluster.name });
    const fraction = progressFraction(cluster.progress);
    const starting = isStarting(cluster);
    const details = h('div', { class: 'dam-details' },
      h('span', { class: 'dam-workers' }, formatWorkers(cluster)),
      h('span', { class: 'dam-cost' }, formatCost(cluster.hourly_cost)),
      h('span', { class: 'dam-age', title: new Date(cluster.created_at * 1000).toLocaleString() },
        formatAge(cluster.age)),
      h('span', { class: 'dam-backend' }, `${cluster.backend} · ${cluster.profile}`)
    );
    const actions = h('div', { class: 'dam-actions' });
    if (starting && cluster.operation) {
      actions.append(button('Cancel', 'dam-cancel', run(COMMANDS.cancel), 'Stop starting it; what was made is removed'));
    }
    if (isRunning(cluster)) {
      actions.append(
        button('Dashboard', 'dam-dashboard', run(COMMANDS.dashboard), 'The dashboard in a browser tab'),
        button('Plots', 'dam-plots', run(COMMANDS.plots), 'Dashboard plots as JupyterLab panels'),
        button('Scale', 'dam-scale', run(COMMANDS.scale)),
        button('Adapt', 'dam-adapt', run(COMMANDS.adapt)),
        button('Use in notebook', 'dam-use', run(COMMANDS.useInNotebook),
          `Insert %dask_cluster attach ${cluster.name} into the active notebook`)
      );
    }
    actions.append(button('Logs', 'dam-logs', run(COMMANDS.logs)));
    if (!starting || !cluster.operation) {
      actions.append(button('Shut down', 'dam-shut-down', run(COMMANDS.shutDown)));
    }
    return h('div', { class: `dam-cluster dam-cluster-${cluster.name} dam-status-${cluster.status}`, 'data-cluster': cluster.name },
      h('div', { class: 'dam-cluster-head' },
        h('span', { class: 'dam-cluster-name' }, cluster.name),
        h('span', { class: 'dam-status' }, cluster.display_status)),
      starting && fraction !== null
        ? h('progress', { class: 'dam-progress', max: 1, value: fraction })
        : starting ? h('progress', { class: 'dam-progress' }) : null,
      details,
      cluster.note ? h('div', { class: 'dam-note' }, cluster.note) : null,
      actions
    );
  }
}
