/**
 * Self time by function of a V8 .cpuprofile (as written by `node --cpu-prof`).
 * Run: node dist/bench/compare/cpuprofile_top.js FILE.cpuprofile [COUNT]
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  name: string;
  self_ms: number;
  /** Share of the profile's busy time (everything but "(idle)"). */
  busy_fraction: number;
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName === '' ? '(anonymous)' : functionName;
  return url === '' ? name : `${name} ${basename(url)}:${lineNumber + 1}`;
}

/** Functions by self time, largest first, and the busy and idle totals in ms. */
export function selfTimes(profile: CpuProfile): {
  functions: FunctionTime[];
  busy_ms: number;
  idle_ms: number;
} {
  const name_of = new Map(profile.nodes.map((node) => [node.id, frameName(node)]));
  const self_us = new Map<string, number>();
  // A sample's time is the delta to the next sample.
  profile.samples.forEach((id, i) => {
    const name = name_of.get(id) ?? '(unknown)';
    const delta_us = profile.timeDeltas[i + 1] ?? 0;
    self_us.set(name, (self_us.get(name) ?? 0) + delta_us);
  });
  const idle_ms = (self_us.get('(idle)') ?? 0) / 1000;
  self_us.delete('(idle)');
  const busy_ms = [...self_us.values()].reduce((sum, us) => sum + us, 0) / 1000;
  const functions = [...self_us.entries()]
    .map(([name, us]) => ({ name, self_ms: us / 1000, busy_fraction: us / 1000 / busy_ms }))
    .sort((a, b) => b.self_ms - a.self_ms);
  return { functions, busy_ms, idle_ms };
}

export function formatTop(file: string, count: number): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const { functions, busy_ms, idle_ms } = selfTimes(profile);
  const lines = [
    `${basename(file)}: busy ${busy_ms.toFixed(0)} ms, idle ${idle_ms.toFixed(0)} ms`,
    '  self ms   busy%  function',
  ];
  for (const entry of functions.slice(0, count)) {
    const share = (entry.busy_fraction * 100).toFixed(1);
    lines.push(`${entry.self_ms.toFixed(0).padStart(9)} ${share.padStart(6)}%  ${entry.name}`);
  }
  return lines.join('\n');
}

if (require.main === module) {
  const [file, count_text] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: cpuprofile_top FILE.cpuprofile [COUNT]\n');
    process.exit(2);
  }
  process.stdout.write(`${formatTop(file, Number(count_text ?? 15))}\n`);
}
