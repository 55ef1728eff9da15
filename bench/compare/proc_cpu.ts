/**
 * CPU time of processes from /proc (Linux), so that a benchmark row can report CPU per operation
 * for every process it involves, including ones that have already exited (through their parent
 * shell's children counters).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticks_per_s: number | null = null;

function clockTicksPerSecond(): number {
  if (ticks_per_s === null) {
    try {
      ticks_per_s = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    } catch {
      ticks_per_s = 100;
    }
    if (!Number.isFinite(ticks_per_s) || ticks_per_s <= 0) ticks_per_s = 100;
  }
  return ticks_per_s;
}

/**
 * utime+stime of a /proc/<pid>/stat line in ms; with `waited_children`, cutime+cstime instead:
 * the CPU of children the process has already waited for.
 */
export function statCpuMs(stat: string, waited_children = false): number {
  // Fields after the parenthesised command name (which may contain spaces); utime, stime,
  // cutime and cstime are fields 14..17 of the line, 12..15 here.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const first = waited_children ? 13 : 11;
  const ticks = Number(fields[first]) + Number(fields[first + 1]);
  if (!Number.isFinite(ticks)) throw new Error(`unreadable /proc stat line: ${stat.slice(0, 80)}`);
  return (ticks * 1000) / clockTicksPerSecond();
}

/** user+system CPU ms of a running process; null when it is gone or /proc is not there. */
export function processCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    return statCpuMs(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return null;
  }
}

/** user+system CPU ms this process has used so far. */
export function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/** Resident set size of a running process in MB; null when it is gone or /proc is not there. */
export function processRssMb(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : null;
  } catch {
    return null;
  }
}
