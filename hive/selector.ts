import { invalidArgument } from './errors.js';

// Kubernetes-style equality-based label selectors: "k=v,k2!=v2,k3,!k4".

export type Requirement =
  | { key: string; op: 'eq' | 'neq'; value: string }
  | { key: string; op: 'exists' | 'notexists' };

export type Selector = Requirement[];

const KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,254})?$/;

export function parseSelector(text: string): Selector {
  const reqs: Selector = [];
  for (const raw of text.split(',')) {
    const part = raw.trim();
    if (!part) continue;
    let m: RegExpMatchArray | null;
    if ((m = part.match(/^([^=!]+?)\s*(==|=|!=)\s*(.*)$/))) {
      const key = m[1].trim();
      if (!KEY.test(key)) throw invalidArgument(`label selector: bad key "${key}"`);
      reqs.push({ key, op: m[2] === '!=' ? 'neq' : 'eq', value: m[3].trim() });
    } else if ((m = part.match(/^!\s*(.+)$/))) {
      const key = m[1].trim();
      if (!KEY.test(key)) throw invalidArgument(`label selector: bad key "${key}"`);
      reqs.push({ key, op: 'notexists' });
    } else {
      if (!KEY.test(part)) throw invalidArgument(`label selector: cannot parse "${part}"`);
      reqs.push({ key: part, op: 'exists' });
    }
  }
  return reqs;
}

export function matchesSelector(selector: Selector, labels: Record<string, string>): boolean {
  for (const r of selector) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    switch (r.op) {
      case 'eq':
        if (!has || labels[r.key] !== r.value) return false;
        break;
      case 'neq':
        if (has && labels[r.key] === r.value) return false;
        break;
      case 'exists':
        if (!has) return false;
        break;
      case 'notexists':
        if (has) return false;
        break;
    }
  }
  return true;
}
