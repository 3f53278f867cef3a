// Drives VS Code (code-server) in headless Chromium through the specd extension, the way a user would.
//
//   node drive.js  (everything comes from the environment, see CONFIG)
//
// Writes OUT/result.json with what it saw and OUT/NN-*.png screenshots; exits 0 when it ran to the end
// (the test judges the result), 1 on a driver error. Phases:
//  1. open the file; the status bar leaves "starting"; pop-ups so far
//  2. put the cursor at the end of line 10 and let it rest (the extension's cursor hint warms the daemon), then
//     type there, wait for ghost text, Tab, save: the file on disk
//  3. mid-line: type a word's start, open the suggest widget: its rows (the editor's own words must be there)
//  4. change specd.serverPath in the user settings: the client restarts on the new path and serves ghost text
//     on line 11 (left indented and empty by phase 3)
//  5. a serverPath that does not exist: the message offered
const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const CONFIG = {
  url: process.env.E2E_URL,
  out: process.env.E2E_OUT,
  file: process.env.E2E_FILE,
  secondServer: process.env.E2E_SECOND_SERVER,
  secondServerLog: process.env.E2E_SECOND_SERVER_LOG,
  typeText: process.env.E2E_TYPE_TEXT || "return n * factorial(",
  midwordText: process.env.E2E_MIDWORD_TEXT || "return fac",
  ghostWaitMs: Number(process.env.E2E_GHOST_WAIT_MS || 60000),
  chromium: process.env.E2E_CHROMIUM || "/usr/bin/chromium",
};
const r = { steps: [], pageErrors: [] };
const t0 = Date.now();
let page;
let shotNumber = 0;
const log = (m) => {
  const line = `[drive +${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`;
  console.log(line);
  r.steps.push(line);
};
const save = () => fs.writeFileSync(path.join(CONFIG.out, "result.json"), JSON.stringify(r, null, 2));
const sleep = (ms) => page.waitForTimeout(ms);

async function shot(name) {
  shotNumber += 1;
  await page.screenshot({ path: path.join(CONFIG.out, `${String(shotNumber).padStart(2, "0")}-${name}.png`) });
}
// The extension's status-bar item: its DOM id ends with the id given to createStatusBarItem.
async function statusItem() {
  const a = page.locator('[id$="specd.status"] a').first();
  if ((await a.count()) === 0) return null;
  return { text: (await a.innerText()).trim(), aria: await a.getAttribute("aria-label") };
}
async function waitStatus(predicate, ms) {
  const end = Date.now() + ms;
  let st = null;
  while (Date.now() < end) {
    st = await statusItem();
    if (st && predicate(st)) return st;
    await sleep(500);
  }
  return st;
}
const started = (st) => st.aria && !/specd: starting/.test(st.aria);
const healthy = (st) => /check/.test(st.text + " " + (st.aria || "")) && /daemon: ready/.test(st.aria || "");
// Notifications (toasts and the notification center) with their severity icon.
async function notifications() {
  return page.locator(".notification-list-item").evaluateAll((items) =>
    items.map((item) => {
      const icon = item.querySelector(".notification-list-item-icon");
      const cls = icon ? icon.className : "";
      const severity = /error/.test(cls) ? "error" : /warning/.test(cls) ? "warning" : "info";
      const message = (item.querySelector(".notification-list-item-message") || {}).innerText || "";
      const buttons = [...item.querySelectorAll(".notification-list-item-buttons-container .monaco-button")].map((b) => b.innerText.trim());
      return { severity, message: message.trim(), buttons };
    }),
  );
}
async function quickInput(keys, text) {
  await page.keyboard.press(keys);
  await page.waitForSelector(".quick-input-widget input", { state: "visible" });
  await page.keyboard.type(text, { delay: 20 });
  await sleep(800);
  await page.keyboard.press("Enter");
}
async function gotoLineEnd(line) {
  await quickInput("Control+g", String(line));
  await page.keyboard.press("End");
}
const ghostSel = '.editor-instance .monaco-editor [class*="ghost-text"]';
async function waitGhost(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // Monaco splits one suggestion into several decorations (and a view zone per extra line).
    const g = (await page.locator(ghostSel).allInnerTexts()).join("");
    if (g.trim()) return g.replace(/\u00a0/g, " ");
    await sleep(200);
  }
  return "";
}
async function suggestRows() {
  const rows = page.locator(".editor-widget.suggest-widget.visible .monaco-list-row");
  return (await rows.count()) ? (await rows.allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim()) : [];
}
// Sets specd.serverPath in the Settings editor, as a user does; then back to the file.
async function setServerPath(value, shotName) {
  await quickInput("F1", "Preferences: Open User Settings");
  await page.waitForSelector(".settings-editor", { timeout: 30000 });
  await sleep(1500);
  await page.keyboard.type("specd.serverPath", { delay: 20 });
  // specd.serverPath is machine-scoped: in a remote window (code-server is one) it lives on the Remote tab;
  // desktop VS Code shows it on the User tab.
  const remoteTab = page.locator(".settings-editor .settings-tabs-widget .action-label", { hasText: "Remote" }).first();
  if (await remoteTab.count()) {
    await remoteTab.click();
    await sleep(1000);
  }
  const input = page.locator(".settings-editor .setting-item-contents", { hasText: "Server Path" }).locator("input").first();
  await input.waitFor({ timeout: 30000 });
  await input.fill(value);
  await input.press("Tab");
  await sleep(1500);
  await shot(shotName);
  await page.keyboard.press("Control+w"); // close the Settings editor; the file is the active editor again
  await sleep(500);
}
async function typeAndAccept(where) {
  await page.keyboard.type(CONFIG.typeText, { delay: 80 });
  const t = Date.now();
  const ghost = await waitGhost(CONFIG.ghostWaitMs);
  const out = { ghost, ghostAfterMs: ghost ? Date.now() - t : null, suggestRowsWithGhost: await suggestRows() };
  await shot(`${where}-ghost`);
  await page.keyboard.press("Tab");
  await sleep(800);
  await page.keyboard.press("Control+s");
  await sleep(1500);
  await shot(`${where}-after-tab`);
  return out;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: CONFIG.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
  page.on("pageerror", (e) => r.pageErrors.push(String(e).slice(0, 300)));

  // 1. Open the workspace and the file (from the Explorer: Quick Open can lag right after the load).
  await page.goto(CONFIG.url, { waitUntil: "domcontentloaded" });
  await page.waitForSelector(".monaco-workbench .statusbar", { timeout: 120000 });
  const row = page.locator(".explorer-folders-view .monaco-list-row", { hasText: path.basename(CONFIG.file) }).first();
  await row.waitFor({ timeout: 60000 });
  await row.dblclick();
  await page.waitForSelector(".editor-instance .monaco-editor .view-lines", { timeout: 60000 });
  r.statusAtStart = await waitStatus(started, 90000);
  r.statusHealthy = await waitStatus(healthy, 60000);
  log(`status bar: ${JSON.stringify(r.statusHealthy)}`);
  await shot("opened");

  // 2. Ghost text at the end of line 10 (inside factorial), accepted with Tab.
  const original = fs.readFileSync(CONFIG.file, "utf8");
  await page.click(".editor-instance .monaco-editor .view-lines");
  await gotoLineEnd(10);
  await sleep(Number(process.env.E2E_REST_MS || 4000));
  Object.assign(r, await typeAndAccept("line10"));
  r.fileBefore = original;
  r.fileAfterTab = fs.readFileSync(CONFIG.file, "utf8");
  log(`ghost ${JSON.stringify(r.ghost)} after ${r.ghostAfterMs} ms; line 10 now ${JSON.stringify(r.fileAfterTab.split("\n")[9])}`);

  // 3. Mid-line: the suggest widget keeps the editor's own words.
  await page.keyboard.press("End");
  await page.keyboard.press("Enter");
  await page.keyboard.type(CONFIG.midwordText, { delay: 80 });
  await sleep(1500);
  await page.keyboard.press("Control+Space");
  await sleep(3000);
  r.midwordSuggestRows = await suggestRows();
  log(`suggest widget mid-word: ${JSON.stringify(r.midwordSuggestRows)}`);
  await shot("midword-suggest");
  await page.keyboard.press("Escape");
  await page.keyboard.press("Escape");
  await page.keyboard.press("Shift+Home"); // select the typed word start (Home stops at the indentation)
  await page.keyboard.press("Backspace");
  await page.keyboard.press("Control+s");
  await sleep(1000);
  r.fileBeforeRestart = fs.readFileSync(CONFIG.file, "utf8");
  r.notificationsBeforeRestart = await notifications();
  log(`notifications: ${JSON.stringify(r.notificationsBeforeRestart)}`);

  // 4. A new specd.serverPath: the client restarts on it.
  await setServerPath(CONFIG.secondServer, "settings-second-server");
  const end = Date.now() + 60000;
  while (Date.now() < end && !fs.existsSync(CONFIG.secondServerLog)) await sleep(300);
  r.secondServerStarted = fs.existsSync(CONFIG.secondServerLog);
  r.statusAfterRestart = await waitStatus(healthy, 60000);
  log(`second server started: ${r.secondServerStarted}; status ${JSON.stringify(r.statusAfterRestart)}`);
  // The cursor is still on the emptied line 11.
  const afterRestart = await typeAndAccept("restarted");
  r.ghostAfterRestart = afterRestart.ghost;
  r.fileAfterRestart = fs.readFileSync(CONFIG.file, "utf8");
  r.notificationsAfterRestart = await notifications();

  // 5. A serverPath that does not exist: a message that says what to do, with actions.
  await setServerPath("/nonexistent/specd", "settings-missing-server");
  const until = Date.now() + 30000;
  while (Date.now() < until && !(await notifications()).some((n) => /not found/.test(n.message))) await sleep(300);
  r.notificationsMissingServer = await notifications();
  r.statusMissingServer = await statusItem();
  log(`missing server: ${JSON.stringify(r.notificationsMissingServer)}`);
  await shot("missing-server");
  save();
  await browser.close();
})().catch(async (err) => {
  r.driverError = String(err && err.stack ? err.stack : err);
  try {
    await shot("driver-error");
  } catch (e) {}
  save();
  console.error(err);
  process.exit(1);
});
