// Turns the answer of the server's `specd.status` command into the status-bar text.
// The answer's fields are optional on purpose: an older or newer `specd lsp` may send fewer or more.

export interface ServerStatus {
  enabled?: boolean;
  daemon?: string | { state?: string; url?: string; error?: string };
  acceptance_rate?: number | null;
  acceptanceRate?: number | null;
  model?: string;
  models?: { verifier?: string; drafter?: string | null };
}

export interface StatusView {
  text: string;
  tooltip: string;
  healthy: boolean;
}

export function daemonState(status: ServerStatus): { state: string; detail: string } {
  const daemon = status.daemon;
  if (typeof daemon === "string") {
    return { state: daemon, detail: "" };
  }
  if (daemon && typeof daemon === "object") {
    return { state: daemon.state ?? "unknown", detail: daemon.error ?? daemon.url ?? "" };
  }
  return { state: "unknown", detail: "" };
}

export function statusView(status: ServerStatus | undefined, startError?: string): StatusView {
  if (startError) {
    return { text: "$(error) specd", tooltip: `specd lsp did not start: ${startError}`, healthy: false };
  }
  if (!status) {
    return { text: "$(sync~spin) specd", tooltip: "specd: starting", healthy: true };
  }
  if (status.enabled === false) {
    return { text: "$(circle-slash) specd", tooltip: "specd: completions off (click to see status)", healthy: true };
  }
  const { state, detail } = daemonState(status);
  const rate = status.acceptance_rate ?? status.acceptanceRate;
  const model = status.models?.verifier ?? status.model;
  const lines = [`specd daemon: ${state}${detail ? ` (${detail})` : ""}`];
  if (model) {
    lines.push(`model: ${model}${status.models?.drafter ? ` + ${status.models.drafter}` : ""}`);
  }
  if (typeof rate === "number") {
    lines.push(`draft acceptance: ${Math.round(rate * 100)}%`);
  }
  const healthy = !["stopped", "unreachable", "error"].includes(state);
  const icon = healthy ? "$(check)" : "$(warning)";
  const suffix = typeof rate === "number" ? ` ${Math.round(rate * 100)}%` : "";
  return { text: `${icon} specd${suffix}`, tooltip: lines.join("\n"), healthy };
}
