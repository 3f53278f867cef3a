// The LSP trace, switched by the one setting `specd.trace.server`.
//
// vscode-languageclient 11 traces only while its trace channel's log level is Trace (`refreshTrace` in
// common/client.js), and `trace.server` then only picks "messages" or "verbose": with the default log level
// the setting alone logs nothing. This channel reports Trace as its level exactly while `specd.trace.server`
// is not "off", and tells the client when that changes.

import { Event, EventEmitter, LogLevel, LogOutputChannel, OutputChannel, ViewColumn, window, workspace, Disposable } from "vscode";

export class TraceChannel implements LogOutputChannel {
  private readonly channel: OutputChannel;
  private readonly levelChanged = new EventEmitter<LogLevel>();
  private readonly watcher: Disposable;
  private level: LogLevel;
  readonly onDidChangeLogLevel: Event<LogLevel> = this.levelChanged.event;

  constructor(readonly name: string, private readonly setting = "specd.trace.server") {
    this.channel = window.createOutputChannel(name);
    this.level = this.configuredLevel();
    this.watcher = workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(this.setting)) return;
      const level = this.configuredLevel();
      if (level !== this.level) {
        this.level = level;
        this.levelChanged.fire(level);
      }
    });
  }

  get logLevel(): LogLevel {
    return this.level;
  }

  private configuredLevel(): LogLevel {
    const [section, ...key] = this.setting.split(".");
    const value = workspace.getConfiguration(section).get<string>(key.join("."), "off");
    return value === "off" ? LogLevel.Off : LogLevel.Trace;
  }

  private write(message: string): void {
    this.channel.appendLine(`${new Date().toISOString()} ${message}`);
  }

  trace(message: string): void {
    if (this.level === LogLevel.Trace) this.write(message);
  }
  debug(message: string): void {
    this.trace(message);
  }
  info(message: string): void {
    this.trace(message);
  }
  warn(message: string): void {
    this.trace(message);
  }
  error(error: string | Error): void {
    this.trace(String(error));
  }
  append(value: string): void {
    this.channel.append(value);
  }
  appendLine(value: string): void {
    this.channel.appendLine(value);
  }
  replace(value: string): void {
    this.channel.replace(value);
  }
  clear(): void {
    this.channel.clear();
  }
  show(columnOrPreserveFocus?: ViewColumn | boolean, preserveFocus?: boolean): void {
    if (typeof columnOrPreserveFocus === "boolean") this.channel.show(columnOrPreserveFocus);
    else this.channel.show(columnOrPreserveFocus, preserveFocus);
  }
  hide(): void {
    this.channel.hide();
  }
  dispose(): void {
    this.watcher.dispose();
    this.levelChanged.dispose();
    this.channel.dispose();
  }
}
