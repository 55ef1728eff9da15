/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for
 * tests: every line must be a HELP, a TYPE or a sample; every sample must
 * belong to a family whose TYPE came first; no series may repeat; histogram
 * buckets must be cumulative and end in `+Inf` equal to `_count`. Any
 * violation throws naming the line.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen_series = new Set<string>();
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  for (const [index, line] of lines.entries()) {
    const where = `line ${index + 1} ${JSON.stringify(line)}`;
    if (line === '') continue; // the format allows empty lines
    if (line.startsWith('#')) {
      parseComment(line, families, where);
      continue;
    }
    const sample = parseSample(line, where);
    const family = families.get(familyName(sample.name, families));
    if (family === undefined) throw new Error(`${where}: sample before its TYPE`);
    const series = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen_series.has(series)) throw new Error(`${where}: duplicate series`);
    seen_series.add(series);
    family.samples.push(sample);
  }
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

function parseComment(line: string, families: Map<string, Family>, where: string): void {
  const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
  if (match === null) return; // a plain comment
  const [, keyword, name, rest] = match as unknown as [string, string, string, string];
  if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
  let family = families.get(name);
  if (family === undefined) {
    family = { name, type: 'untyped', help: '', samples: [] };
    families.set(name, family);
  }
  if (keyword === 'HELP') family.help = rest;
  else if (!TYPES.has(rest)) throw new Error(`${where}: bad type`);
  else if (family.samples.length > 0) throw new Error(`${where}: TYPE after samples`);
  else family.type = rest;
}

function familyName(sample_name: string, families: Map<string, Family>): string {
  if (families.has(sample_name)) return sample_name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample_name.endsWith(suffix)) continue;
    const base = sample_name.slice(0, -suffix.length);
    const type = families.get(base)?.type;
    if (type === 'histogram' || type === 'summary') return base;
  }
  return sample_name;
}

function parseSample(line: string, where: string): Sample {
  const name_match = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (name_match === null) throw new Error(`${where}: no metric name`);
  const name = name_match[0];
  let position = name.length;
  const labels: Record<string, string> = {};
  if (line[position] === '{') {
    position = parseLabels(line, position + 1, labels, where);
  }
  const rest = line.slice(position);
  const parts = rest.trim().split(' ');
  if (!rest.startsWith(' ') || parts.length < 1 || parts.length > 2)
    throw new Error(`${where}: expected ' value [timestamp]'`);
  const value = parseValue(parts[0] ?? '', where);
  return { name, labels, value };
}

function parseLabels(
  line: string,
  start: number,
  labels: Record<string, string>,
  where: string,
): number {
  let position = start;
  while (line[position] !== '}') {
    const match = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(position));
    if (match === null || !LABEL_NAME.test(match[1] ?? ''))
      throw new Error(`${where}: bad label at ${position}`);
    position += match[0].length;
    let value = '';
    for (;;) {
      const char = line[position];
      if (char === undefined) throw new Error(`${where}: unterminated label value`);
      position++;
      if (char === '"') break;
      if (char !== '\\') {
        value += char;
        continue;
      }
      const escaped = line[position++];
      if (escaped === 'n') value += '\n';
      else if (escaped === '\\' || escaped === '"') value += escaped;
      else throw new Error(`${where}: bad escape`);
    }
    const label = match[1] as string;
    if (label in labels) throw new Error(`${where}: label ${label} twice`);
    labels[label] = value;
    if (line[position] === ',') position++;
    else if (line[position] !== '}') throw new Error(`${where}: expected , or }`);
  }
  return position + 1;
}

/** Values are what Go's strconv.ParseFloat accepts: NaN and Inf in any letter case. */
function parseValue(text: string, where: string): number {
  const lower = text.toLowerCase();
  if (/^\+?inf(inity)?$/.test(lower)) return Number.POSITIVE_INFINITY;
  if (/^-inf(inity)?$/.test(lower)) return Number.NEGATIVE_INFINITY;
  if (lower === 'nan') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text))
    throw new Error(`${where}: bad value ${text}`);
  return Number(text);
}

function checkHistogram(family: Family): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count: number | null }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let group = groups.get(key);
    if (group === undefined) {
      group = { buckets: [], count: null };
      groups.set(key, group);
    }
    if (sample.name.endsWith('_bucket')) {
      if (le === undefined) throw new Error(`${family.name}: bucket without le`);
      group.buckets.push([parseValue(le, family.name), sample.value]);
    } else if (sample.name.endsWith('_count')) group.count = sample.value;
  }
  for (const [key, group] of groups) {
    const sorted = [...group.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]![1] < sorted[i - 1]![1])
        throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
    const last = sorted[sorted.length - 1];
    if (last === undefined || last[0] !== Number.POSITIVE_INFINITY || last[1] !== group.count)
      throw new Error(`${family.name}${key}: +Inf bucket missing or differs from _count`);
  }
}

/** The value of the one sample of `name` whose labels include `labels`; throws if not one. */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const family = families.get(familyName(name, families));
  const matches = (family?.samples ?? []).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length !== 1)
    throw new Error(`${matches.length} samples of ${name} ${JSON.stringify(labels)}`);
  return (matches[0] as Sample).value;
}
