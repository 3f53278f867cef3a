// Where the `specd` executable is when `specd.serverPath` does not say, or says only "specd".
//
// VS Code started from the desktop does not get the shell's PATH, and specd is often installed where only a
// shell finds it: pipx and `pip install --user` put it in ~/.local/bin, a virtual environment in its bin/
// (Scripts\ on Windows). No VS Code API here, so it can be tested under plain Node.

import * as fs from "fs";
import * as os from "os";
import * as nodePath from "path";

export interface Environment {
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  home: string;
  workspaceFolders: string[];
  isExecutable: (file: string) => boolean;
}

export function realEnvironment(workspaceFolders: string[]): Environment {
  return {
    env: process.env,
    platform: process.platform,
    home: os.homedir(),
    workspaceFolders,
    isExecutable: (file) => {
      try {
        fs.accessSync(file, process.platform === "win32" ? fs.constants.F_OK : fs.constants.X_OK);
        return fs.statSync(file).isFile();
      } catch {
        return false;
      }
    },
  };
}

// The folders searched, in order, for a bare command name.
function pathModule(e: Environment): typeof nodePath.posix {
  return e.platform === "win32" ? nodePath.win32 : nodePath.posix;
}

export function candidateFolders(e: Environment): string[] {
  const win = e.platform === "win32";
  const path = pathModule(e);
  const bin = win ? "Scripts" : "bin";
  const pathSep = win ? ";" : ":";
  const folders: string[] = [];
  const add = (folder: string | undefined) => {
    if (folder && !folders.includes(folder)) folders.push(folder);
  };
  for (const folder of (e.env.PATH ?? e.env.Path ?? "").split(pathSep)) add(folder);
  // The active Python environment VS Code was started in, then the workspace's own virtual environments.
  if (e.env.VIRTUAL_ENV) add(path.join(e.env.VIRTUAL_ENV, bin));
  if (e.env.CONDA_PREFIX) add(win ? path.join(e.env.CONDA_PREFIX, "Scripts") : path.join(e.env.CONDA_PREFIX, "bin"));
  for (const ws of e.workspaceFolders) {
    add(path.join(ws, ".venv", bin));
    add(path.join(ws, "venv", bin));
  }
  // pipx (its default bin dir, PIPX_BIN_DIR) and `pip install --user`.
  add(e.env.PIPX_BIN_DIR);
  add(path.join(e.home, ".local", "bin"));
  add(path.join(e.home, ".local", "share", "pipx", "venvs", "specd", bin));
  add(path.join(e.home, ".local", "pipx", "venvs", "specd", bin));
  if (win && e.env.APPDATA) add(path.join(e.env.APPDATA, "Python", "Scripts"));
  if (e.platform === "darwin") {
    add("/opt/homebrew/bin");
    add(path.join(e.home, "Library", "Python", "bin"));
  }
  add("/usr/local/bin");
  return folders;
}

// The executable to run: `configured` itself when it is a path (absolute, or with a folder in it), else
// the first `configured` found in candidateFolders(). Undefined when there is none.
export function findServer(configured: string, e: Environment): string | undefined {
  const path = pathModule(e);
  const command = configured.trim() || "specd";
  const expanded = command.startsWith("~/") ? path.join(e.home, command.slice(2)) : command;
  if (expanded.includes("/") || expanded.includes("\\")) {
    return e.isExecutable(expanded) ? expanded : undefined;
  }
  const names = e.platform === "win32" && !/\.(exe|cmd|bat)$/i.test(expanded) ? [`${expanded}.exe`, expanded] : [expanded];
  for (const folder of candidateFolders(e)) {
    for (const name of names) {
      const file = path.join(folder, name);
      if (e.isExecutable(file)) return file;
    }
  }
  return undefined;
}
