import type { ChaosResult } from './run_chaos';

/** The run's report; its last line is the one `chaos: ...` line scripts read. */
export function formatSummary(result: ChaosResult): { text: string; passed: boolean } {
  const lines: string[] = [];
  const by_kind = new Map<string, number>();
  for (const fault of result.faults) by_kind.set(fault.kind, (by_kind.get(fault.kind) ?? 0) + 1);
  lines.push(`seed ${result.seed}`);
  const kinds = [...by_kind].map(([kind, count]) => `${kind} ${count}`);
  lines.push(`faults by kind: ${kinds.join(', ') || 'none'}`);
  const codes = [...result.counts.fail_codes].map(([code, count]) => `${code} ${count}`);
  lines.push(`failed operations by code: ${codes.join(', ') || 'none'}`);
  for (const [code, message] of result.counts.fail_samples)
    lines.push(`  last ${code}: ${message}`);
  const { later_faults } = result.longest_unavailable;
  lines.push(
    `longest unavailability after a fault: ${Math.round(result.longest_unavailable.ms)} ms ` +
      `(fault start to the first successful write called after it; ` +
      `${Math.round(result.longest_unavailable.after_heal_ms)} ms of it after healing), after ` +
      result.longest_unavailable.fault +
      (later_faults.length === 0
        ? ''
        : `; ${later_faults.length} more faults began before that write: ` +
          later_faults.join(', ')),
  );
  lines.push(
    `after healing a write committed in ${
      result.healed_write_ms === null ? 'NEVER' : `${Math.round(result.healed_write_ms)} ms`
    }`,
  );
  if (result.fuzz !== null) {
    const { inputs, resp, raft } = result.fuzz;
    lines.push(`live fuzzing: ${inputs} inputs (${resp} RESP, ${raft} Raft frames)`);
  }
  lines.push(`largest node RSS: ${result.rss_max_mib.toFixed(1)} MiB`);
  for (const failure of result.check_failures) lines.push(`CHECK FAILED: ${failure}`);
  if (result.violation_text !== null)
    lines.push(`VIOLATION (replay with --seed ${result.seed}): ${result.violation_text}`);
  const { ok, fail, unknown } = result.counts;
  lines.push(
    `chaos: ${result.ops} ops (${ok} ok, ${fail} fail, ${unknown} unknown), ` +
      `${result.faults.length} faults, ${result.violations} violations`,
  );
  const passed = result.violations === 0 && result.check_failures.length === 0;
  return { text: `${lines.join('\n')}\n`, passed };
}
