// vscode-languageserver-protocol (what VS Code's client is built on) drives `specd lsp` over stdio:
// open a document, edit it, inline completion, completion, and a cancelled slow request.
// Usage: node drive_specd.js '<server command as JSON>' <lines of the slow document> ; prints one JSON line of results.
const { spawn } = require("child_process");
const p = require("vscode-languageserver-protocol/node");

async function main() {
  const [cmd, ...args] = JSON.parse(process.argv[2]);
  const slowLines = Number(process.argv[3]);
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "inherit"] });
  const conn = p.createProtocolConnection(new p.StreamMessageReader(child.stdout), new p.StreamMessageWriter(child.stdin));
  const logs = [];
  conn.onNotification(p.LogMessageNotification.type, (m) => logs.push(m.message));
  conn.listen();
  const result = {};
  const init = await conn.sendRequest(p.InitializeRequest.type, {
    processId: process.pid, rootUri: null, capabilities: { general: { positionEncodings: ["utf-16"] } },
    initializationOptions: { debounceMs: 0, maxTokens: 12, mode: "line" },
  });
  result.inlineProvider = init.capabilities.inlineCompletionProvider !== undefined;
  result.positionEncoding = init.capabilities.positionEncoding;
  await conn.sendNotification(p.InitializedNotification.type, {});
  const uri = "file:///work/sample.py";
  await conn.sendNotification(p.DidOpenTextDocumentNotification.type,
    { textDocument: { uri, languageId: "python", version: 1, text: "def add(a, b):\n    x = '😀'" } });
  await conn.sendNotification(p.DidChangeTextDocumentNotification.type, {
    textDocument: { uri, version: 2 },
    contentChanges: [{ range: { start: { line: 1, character: 12 }, end: { line: 1, character: 12 } }, text: " + ret" }],
  });
  const position = { line: 1, character: 18 };
  const inline = await conn.sendRequest(p.InlineCompletionRequest.type,
    { textDocument: { uri }, position, context: { triggerKind: 1 } });
  result.inlineItems = inline.items.length;
  result.inlineRange = inline.items.length ? inline.items[0].range : null;
  const completion = await conn.sendRequest(p.CompletionRequest.type, { textDocument: { uri }, position });
  result.completionIncomplete = completion.isIncomplete;
  result.completionItems = completion.items.length;

  await conn.sendNotification(p.DidChangeConfigurationNotification.type,
    { settings: { specd: { debounceMs: 0, maxTokens: 2000, draftTokens: 0, mode: "block" } } });
  await conn.sendNotification(p.DidChangeTextDocumentNotification.type,
    { textDocument: { uri, version: 3 }, contentChanges: [{ text: "import os\n".repeat(slowLines) }] });
  const source = new p.CancellationTokenSource();
  const slow = conn.sendRequest(p.InlineCompletionRequest.type,
    { textDocument: { uri }, position: { line: slowLines, character: 0 }, context: { triggerKind: 1 } }, source.token);
  setTimeout(() => source.cancel(), 200);
  try {
    await slow;
    result.slowCancelled = false;
  } catch (e) {
    result.slowCancelled = e.code === p.LSPErrorCodes.RequestCancelled;
  }
  await conn.sendRequest(p.ShutdownRequest.type);
  await conn.sendNotification(p.ExitNotification.type);
  result.logs = logs;
  process.stdout.write(JSON.stringify(result) + "\n");
  conn.dispose();
}

main().catch((e) => { process.stdout.write(JSON.stringify({ error: String(e) }) + "\n"); process.exit(1); });
