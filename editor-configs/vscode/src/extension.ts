import { ExtensionContext, StatusBarAlignment, StatusBarItem, ThemeColor, commands, window, workspace } from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  TransportKind,
} from "vscode-languageclient/node";
import { ServerStatus, statusView } from "./status";

const STATUS_POLL_MS = 15_000;

let client: LanguageClient | undefined;
let statusItem: StatusBarItem | undefined;
let pollTimer: NodeJS.Timeout | undefined;

export async function activate(context: ExtensionContext): Promise<void> {
  statusItem = window.createStatusBarItem("specd.status", StatusBarAlignment.Right, 100);
  statusItem.name = "specd";
  statusItem.command = "specd.showLog";
  context.subscriptions.push(statusItem);
  showStatus(undefined);
  statusItem.show();

  const outputChannel = window.createOutputChannel("specd", { log: true });
  context.subscriptions.push(outputChannel);
  // `specd.toggle` and `specd.status` are the server's workspace/executeCommand commands: the language
  // client registers them itself when the server starts, so only the log command is ours.
  context.subscriptions.push(commands.registerCommand("specd.showLog", () => outputChannel.show(true)));

  const cfg = workspace.getConfiguration("specd");
  const serverOptions: ServerOptions = {
    command: cfg.get<string>("serverPath", "specd"),
    args: ["lsp"],
    transport: TransportKind.stdio,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    // The server pulls the `specd` section with workspace/configuration; this makes VS Code tell it
    // when the section changes.
    synchronize: { configurationSection: "specd" },
    outputChannel,
    initializationOptions: { client: "vscode" },
    middleware: {
      executeCommand: async (command, args, next) => {
        const result = await next(command, args);
        if (command === "specd.status") {
          showStatus(result as ServerStatus);
          void window.showInformationMessage(statusView(result as ServerStatus).tooltip.replace(/\n/g, " · "));
        } else if (command === "specd.toggle") {
          await refreshStatus();
        }
        return result;
      },
    },
  };

  client = new LanguageClient("specd", "specd", serverOptions, clientOptions);
  context.subscriptions.push(client);
  try {
    // Inline completion is a default feature of vscode-languageclient >= 10.0.1.
    await client.start();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    showStatus(undefined, message);
    outputChannel.appendLine(`specd lsp did not start (${serverOptions.command} lsp): ${message}`);
    return;
  }
  statusItem.command = "specd.status";
  await refreshStatus();
  pollTimer = setInterval(() => void refreshStatus(), STATUS_POLL_MS);
  context.subscriptions.push({ dispose: () => clearInterval(pollTimer) });
}

async function refreshStatus(): Promise<void> {
  if (!client || !client.isRunning()) {
    return;
  }
  try {
    const result = await client.sendRequest(ExecuteCommandRequest.type, { command: "specd.status", arguments: [] });
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
  if (pollTimer) {
    clearInterval(pollTimer);
  }
  return client?.stop();
}
