import {
  ConfigurationTarget,
  ExtensionContext,
  LogOutputChannel,
  StatusBarAlignment,
  StatusBarItem,
  ThemeColor,
  commands,
  window,
  workspace,
} from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  TransportKind,
} from "vscode-languageclient/node";
import { watchCursor } from "./cursorHint";
import { findServer, realEnvironment } from "./serverPath";
import { ServerStatus, statusView } from "./status";
import { TraceChannel } from "./traceChannel";

const STATUS_POLL_MS = 15_000;

let client: LanguageClient | undefined;
let statusItem: StatusBarItem | undefined;
let outputChannel: LogOutputChannel | undefined;
let traceChannel: TraceChannel | undefined;
let pollTimer: NodeJS.Timeout | undefined;
// Starts and stops run one after another: a settings change during a start waits for it.
let lifecycle: Promise<void> = Promise.resolve();
// The specd.serverPath value the running client was started with, and a pending restart for a change of it.
let startedWith: string | undefined;
let restartTimer: NodeJS.Timeout | undefined;
// Why the language server is not running, when it did not start (for the commands' answer).
let startProblem: string | undefined;
// Editing a setting can fire several change events (typing, then leaving the field): restart once, after
// they settle, and only when the value really differs; a client stopped in the middle of its start would
// report its pending notifications as errors.
const RESTART_SETTLE_MS = 400;

export async function activate(context: ExtensionContext): Promise<void> {
  statusItem = window.createStatusBarItem("specd.status", StatusBarAlignment.Right, 100);
  statusItem.name = "specd";
  statusItem.command = "specd.showLog";
  context.subscriptions.push(statusItem);
  showStatus(undefined);
  statusItem.show();

  outputChannel = window.createOutputChannel("specd", { log: true });
  traceChannel = new TraceChannel("specd LSP trace");
  context.subscriptions.push(outputChannel, traceChannel);
  // The palette's commands are all ours: "Show status" and "Toggle completions" run the server's
  // workspace/executeCommand commands `specd.status` and `specd.toggle` when it runs, and say why not when it
  // does not (the language client registers the server's own ids only once the server is up).
  context.subscriptions.push(
    commands.registerCommand("specd.showLog", () => outputChannel?.show(true)),
    commands.registerCommand("specd.restart", () => restart()),
    commands.registerCommand("specd.showStatus", () => runServerCommand("specd.status")),
    commands.registerCommand("specd.toggleCompletions", () => runServerCommand("specd.toggle")),
    workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration("specd.serverPath")) {
        clearTimeout(restartTimer);
        restartTimer = setTimeout(() => void restartIfServerPathChanged(), RESTART_SETTLE_MS);
      } else if (e.affectsConfiguration("specd")) {
        // The server applies the section at once (didChangeConfiguration): the status bar follows it.
        setTimeout(() => void refreshStatus(), RESTART_SETTLE_MS);
      }
    }),
    { dispose: () => clearTimeout(restartTimer) },
    { dispose: () => void stopClient() },
    watchCursor(() => client),
  );
  await restart();
}

function configuredServerPath(): string {
  return workspace.getConfiguration("specd").get<string>("serverPath", "specd");
}

function restartIfServerPathChanged(): Promise<void> {
  if (configuredServerPath() === startedWith) {
    return lifecycle;
  }
  outputChannel?.info("specd.serverPath changed: restarting the language server");
  return restart();
}

function restart(): Promise<void> {
  lifecycle = lifecycle.then(async () => {
    await stopClient();
    await startClient();
  });
  return lifecycle;
}

async function startClient(): Promise<void> {
  const configured = configuredServerPath();
  startedWith = configured;
  const folders = (workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  const command = findServer(configured, realEnvironment(folders));
  if (!command) {
    const message = `specd was not found (specd.serverPath is "${configured}"). Install specd, or set specd.serverPath to the full path of the specd executable (\`specd config vscode --write\` does it).`;
    startProblem = message;
    showStatus(undefined, message);
    outputChannel?.error(message);
    void offerFix(message);
    return;
  }
  outputChannel?.info(`starting ${command} lsp`);
  const serverOptions: ServerOptions = { command, args: ["lsp"], transport: TransportKind.stdio };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    // The server pulls the `specd` section with workspace/configuration; this makes VS Code tell it
    // when the section changes.
    synchronize: { configurationSection: "specd" },
    outputChannel,
    traceOutputChannel: traceChannel,
    initializationOptions: { client: "vscode" },
  };
  const started = new LanguageClient("specd", "specd", serverOptions, clientOptions);
  client = started;
  try {
    // Inline completion is a default feature of vscode-languageclient >= 10.0.1.
    await started.start();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    startProblem = `specd lsp did not start (${command} lsp): ${message}`;
    showStatus(undefined, message);
    outputChannel?.error(startProblem);
    return;
  }
  startProblem = undefined;
  if (statusItem) statusItem.command = "specd.showStatus";
  await refreshStatus();
  pollTimer = setInterval(() => void refreshStatus(), STATUS_POLL_MS);
}

async function stopClient(): Promise<void> {
  if (pollTimer) {
    clearInterval(pollTimer);
    pollTimer = undefined;
  }
  const stopping = client;
  client = undefined;
  if (statusItem) statusItem.command = "specd.showLog";
  showStatus(undefined);
  if (stopping) {
    try {
      await stopping.dispose(2000);
    } catch (err) {
      outputChannel?.warn(`stopping the previous specd lsp: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

async function offerFix(message: string): Promise<void> {
  const choose = "Choose specd…";
  const settings = "Open Settings";
  const picked = await window.showErrorMessage(message, choose, settings);
  if (picked === choose) {
    const files = await window.showOpenDialog({ canSelectMany: false, openLabel: "Use this specd" });
    if (files && files[0]) {
      // Saving the setting restarts the client (onDidChangeConfiguration above).
      await workspace.getConfiguration("specd").update("serverPath", files[0].fsPath, ConfigurationTarget.Global);
    }
  } else if (picked === settings) {
    await commands.executeCommand("workbench.action.openSettings", "specd.serverPath");
  }
}

async function runServerCommand(name: "specd.status" | "specd.toggle"): Promise<unknown> {
  const current = client;
  if (!current || !current.isRunning()) {
    const why = startProblem ?? "it is starting or was stopped";
    const picked = await window.showWarningMessage(`specd's language server is not running: ${why}`, "Show Log", "Restart");
    if (picked === "Show Log") {
      outputChannel?.show(true);
    } else if (picked === "Restart") {
      await restart();
    }
    return undefined;
  }
  const result = (await current.sendRequest(ExecuteCommandRequest.type, { command: name, arguments: [] })) as ServerStatus;
  if (name === "specd.status") {
    showStatus(result);
    void window.showInformationMessage(statusView(result).tooltip.replace(/\n/g, " · "));
  } else {
    await refreshStatus();
    void window.showInformationMessage(`specd: completions ${result?.enabled === false ? "off" : "on"}`);
  }
  return result;
}

async function refreshStatus(): Promise<void> {
  const current = client;
  if (!current || !current.isRunning()) {
    return;
  }
  try {
    const result = await current.sendRequest(ExecuteCommandRequest.type, { command: "specd.status", arguments: [] });
    showStatus(result as ServerStatus);
  } catch (err) {
    showStatus({ daemon: { error: err instanceof Error ? err.message : String(err) } });
  }
}

function showStatus(status: ServerStatus | undefined, startError?: string): void {
  if (!statusItem) {
    return;
  }
  const view = statusView(status, startError);
  statusItem.text = view.text;
  statusItem.tooltip = view.tooltip;
  statusItem.backgroundColor = view.healthy ? undefined : new ThemeColor("statusBarItem.warningBackground");
}

export function deactivate(): Thenable<void> | undefined {
  return stopClient();
}
