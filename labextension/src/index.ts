/** The dask-aws-magic JupyterLab extension: a left sidebar over the server extension's API. */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { addCommands } from './commands';
import { daskAwsIcon } from './icon';
import { DaskAwsMagicApi, Fetcher, NAMESPACE } from './request';
import { COMMANDS, DaskAwsSidebar } from './sidebar';

const PLUGIN_ID = 'dask-aws-magic:plugin';

/** Requests through JupyterLab's ServerConnection (token, XSRF and base URL handled there). */
export function serverFetcher(settings = ServerConnection.makeSettings()): Fetcher {
  return (path, init) =>
    ServerConnection.makeRequest(URLExt.join(settings.baseUrl, NAMESPACE, path), init, settings);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Dask clusters, locally or on AWS, in a JupyterLab sidebar.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, INotebookTracker, ISettingRegistry],
  activate: async (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    tracker: INotebookTracker | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    let runOnInsert = false;
    let interval = 2000;
    let settings: ISettingRegistry.ISettings | null = null;
    if (settingRegistry) {
      try {
        settings = await settingRegistry.load(PLUGIN_ID);
        runOnInsert = settings.get('runOnInsert').composite as boolean;
        interval = settings.get('refreshInterval').composite as number;
        settings.changed.connect(() => {
          runOnInsert = settings!.get('runOnInsert').composite as boolean;
        });
      } catch (error) {
        console.warn('dask-aws-magic: settings not loaded', error);
      }
    }
    const api = new DaskAwsMagicApi(serverFetcher());
    const sidebar = new DaskAwsSidebar(api, { run: (command, args) => void app.commands.execute(command, args) }, interval);
    sidebar.title.icon = daskAwsIcon;
    app.shell.add(sidebar, 'left', { rank: 250 });
    restorer?.add(sidebar, sidebar.id);
    addCommands({ app, sidebar, tracker, runOnInsert: () => runOnInsert });
    if (palette) {
      for (const command of Object.values(COMMANDS)) {
        palette.addItem({ command, category: 'Dask Clusters' });
      }
    }
    sidebar.start();
  }
};

export default plugin;
