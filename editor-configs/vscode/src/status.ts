// Turns the answer of the server's `specd.status` command into the status-bar text.
// Every field is optional: an older or newer `specd lsp` may send fewer or more.

export interface DaemonStatus {
  state?: string; // the daemon's own: "ready", "loading", "unloaded", ...
  error?: string; // set by `specd lsp` when it could not reach the daemon
  acceptance_rate?: number | null;
  requests_served?: number;
  models?: { verifier?: string; drafter?: string | null; device?: string } | null;
}

export interface ServerStatus {
  enabled?: boolean;
  daemon?: DaemonStatus;
}

export interface StatusView {
  text: string;
  tooltip: string;
  healthy: boolean;
}

export function statusView(status: ServerStatus | undefined, startError?: string): StatusView {
  if (startError) {
    return { text: "$(error) specd", tooltip: `specd lsp did not start: ${startError}`, healthy: false };
  }
  if (!status) {
    return { text: "$(sync~spin) specd", tooltip: "specd: starting", healthy: true };
  }
  const daemon = status.daemon ?? {};
  if (daemon.error) {
    return { text: "$(warning) specd", tooltip: `specd daemon: ${daemon.error}`, healthy: false };
  }
  if (status.enabled === false) {
    return { text: "$(circle-slash) specd", tooltip: "specd: completions off (specd: Toggle completions)", healthy: true };
  }
  const lines = [`specd daemon: ${daemon.state ?? "unknown"}`];
  const models = daemon.models;
  if (models?.verifier) {
    lines.push(`model: ${models.verifier}${models.drafter ? ` drafted by ${models.drafter}` : ""}`);
  }
  const rate = daemon.acceptance_rate;
  if (typeof rate === "number") {
    lines.push(`draft acceptance: ${Math.round(rate * 100)}%`);
  }
  if (typeof daemon.requests_served === "number") {
    lines.push(`requests served: ${daemon.requests_served}`);
  }
  const suffix = typeof rate === "number" ? ` ${Math.round(rate * 100)}%` : "";
  return { text: `$(check) specd${suffix}`, tooltip: lines.join("\n"), healthy: true };
}
