/** A tiny helper to build DOM nodes: h('div', {class: 'x'}, child, 'text'). */

export type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: { [name: string]: string | number | boolean | EventListener | undefined } = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (typeof value === 'function') {
      node.addEventListener(name.replace(/^on/, ''), value);
    } else if (name === 'class') {
      node.className = String(value);
    } else if (value === true) {
      node.setAttribute(name, '');
    } else {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children) {
    if (child) {
      node.append(child);
    }
  }
  return node;
}

export function button(label: string, cls: string, onClick: () => void, title = ''): HTMLButtonElement {
  return h('button', {
    class: `jp-Button jp-mod-styled jp-mod-small dam-button ${cls}`,
    type: 'button',
    title: title || label,
    onclick: (event: Event) => {
      event.stopPropagation();
      onClick();
    }
  }, label);
}
