import { Disposable, TextEditor, window } from "vscode";
import { LanguageClient } from "vscode-languageclient/node";

// The server's `specd/didMoveCursor` notification (lsp/cursor_hint.py): where the cursor rests, so the daemon
// reads that spot's prompt before the first keystroke there. Sent once the cursor has stayed put this long:
// arrowing through a file sends one hint where it stops, not one per line.
const SETTLE_MS = 150;
const METHOD = "specd/didMoveCursor";

/** Sends the hint for the active editor's cursor after moves, clicks and switches of file. */
export function watchCursor(client: () => LanguageClient | undefined): Disposable {
  let timer: NodeJS.Timeout | undefined;
  const schedule = (editor: TextEditor | undefined) => {
    clearTimeout(timer);
    if (editor) timer = setTimeout(() => send(client(), editor), SETTLE_MS);
  };
  const subscriptions = [
    window.onDidChangeTextEditorSelection((e) => schedule(e.textEditor)),
    window.onDidChangeActiveTextEditor(schedule),
  ];
  schedule(window.activeTextEditor);
  return Disposable.from(...subscriptions, { dispose: () => clearTimeout(timer) });
}

function send(client: LanguageClient | undefined, editor: TextEditor): void {
  if (!client || !client.isRunning() || window.activeTextEditor !== editor) return;
  const scheme = editor.document.uri.scheme;
  if (scheme !== "file" && scheme !== "untitled") return; // the documents the server is sent
  const params = client.code2ProtocolConverter.asTextDocumentPositionParams(editor.document, editor.selection.active);
  client.sendNotification(METHOD, params).catch(() => undefined); // a hint: a stopped server loses nothing
}
