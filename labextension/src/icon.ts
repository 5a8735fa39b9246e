import { LabIcon } from '@jupyterlab/ui-components';

import svg from '../style/icon.svg';

export const daskAwsIcon = new LabIcon({ name: 'dask-aws-magic:icon', svgstr: svg });
