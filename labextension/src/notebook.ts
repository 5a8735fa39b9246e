/** "Use in notebook": insert (and maybe run) the attach cell in the active notebook. */

import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { attachCode, isPythonKernel } from './model';

/** Insert ``%dask_cluster attach NAME`` below the active cell; run it when ``run``. Returns what
 * happened, or throws with a sentence the user can act on. */
export async function useInNotebook(tracker: INotebookTracker, name: string, run: boolean): Promise<string> {
  const panel = tracker.currentWidget;
  if (!panel) {
    throw new Error('Open a notebook first: the cell is inserted into the active notebook.');
  }
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session?.kernel;
  const language = kernel ? (await kernel.info).language_info.name : null;
  if (!isPythonKernel(language)) {
    throw new Error(`The notebook's kernel is ${language ?? 'not running'}; the magic needs a Python kernel.`);
  }
  const notebook = panel.content;
  const active = notebook.activeCell;
  if (!active || active.model.sharedModel.getSource().trim() !== '') {
    NotebookActions.insertBelow(notebook);
  }
  const cell = notebook.activeCell!;
  cell.model.sharedModel.setSource(attachCode(name));
  if (run) {
    await NotebookActions.run(notebook, panel.sessionContext);
    return `ran the cell attaching ${name}`;
  }
  return `inserted a cell attaching ${name}`;
}
