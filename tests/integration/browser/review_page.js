// The browser half of tests/integration/tests/review_serve.rs: drives
// Debian's chromium through playwright-core against `debugmon review
// --serve`. It loads the page, says READY on stdout and waits for GO on
// stdin (the Rust test makes its ptrace in between), then checks, in this
// order, that the ptrace of the target pid appears without a reload, that
// an argv of markup is shown as text and runs nothing, that a filter in
// the URL narrows the list to the ptrace, and that its detail view says it
// verified. Each step prints one `STEP name {json}` line the Rust
// test asserts on; any failure exits non-zero with the reason.
//
// Usage: node review_page.js DRIVER_DIR CHROMIUM BASE_URL TARGET_PID SHOT_DIR

"use strict";

const path = require("path");
const readline = require("readline");

const [driverDir, chromiumPath, base, targetPid, shotDir] = process.argv.slice(2);
const { chromium } = require(path.join(driverDir, "node_modules", "playwright-core"));

/// How long one step may wait for the page (the Rust side bounds the whole).
const STEP_MS = 30000;

function step(name, data) {
  process.stdout.write(`STEP ${name} ${JSON.stringify(data)}\n`);
}

function waitForLine(want) {
  const rl = readline.createInterface({ input: process.stdin });
  return new Promise((resolve, reject) => {
    rl.on("line", (l) => {
      if (l.trim() === want) {
        // Before close(), whose event would reject.
        resolve();
        rl.close();
      }
    });
    rl.on("close", () => reject(new Error(`stdin closed before ${want}`)));
  });
}

/// Rows of a table as {kind, pid, line, text}.
async function rows(page, table) {
  return page.$$eval(`#${table}-table tbody tr`, (trs) =>
    trs.map((tr) => ({
      kind: tr.getAttribute("data-kind"),
      pid: tr.getAttribute("data-target-pid"),
      line: tr.getAttribute("data-line"),
      text: tr.textContent,
    })),
  );
}

async function main() {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // As root chromium has no sandbox of its own to start.
    chromiumSandbox: false,
  });
  const errors = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
    });
    page.on("dialog", (d) => errors.push(`dialog opened: ${d.message()}`));

    const resp = await page.goto(`${base}/`, { waitUntil: "load" });
    const csp = resp.headers()["content-security-policy"] || "";
    await page.waitForFunction(
      () => (document.getElementById("conn") || {}).textContent === "live updates: on",
      null,
      { timeout: STEP_MS },
    );
    // The stream's first records (the agent's start) are on the page
    // before the test's ptrace, so that one arrives as an update.
    await page.waitForSelector("#history-table tbody tr", { timeout: STEP_MS });
    const before = await rows(page, "history");
    const version = await page.getAttribute("#meta", "data-version");
    step("loaded", { title: await page.title(), rows: before.length, version, csp });

    process.stdout.write("READY\n");
    await waitForLine("GO");

    // The ptrace arrives over the event stream: no navigation here.
    const selector = `#history-table tr[data-kind="ptrace"][data-target-pid="${targetPid}"]`;
    await page.waitForSelector(selector, { timeout: STEP_MS });
    const live = (await rows(page, "history")).filter(
      (r) => r.kind === "ptrace" && r.pid === targetPid,
    );
    const alerts = (await rows(page, "alerts")).filter((r) => r.pid === targetPid);
    const url = page.url();
    const newVersion = await page.getAttribute("#meta", "data-version");
    const all = await rows(page, "history");
    // The form, the live alerts and the timeline: the records table
    // below lists whatever else ran on the test machine.
    const chart = await page.locator("#timeline").boundingBox();
    await page.screenshot({
      path: path.join(shotDir, "review-live.png"),
      clip: { x: 0, y: 0, width: 1400, height: Math.ceil(chart.y + chart.height + 8) },
    });
    step("live", {
      url,
      version: newVersion,
      rows: all.length,
      matching: live.length,
      in_alerts: alerts.length,
      text: live[0].text,
    });

    // An exec whose argv is markup (the Rust side ran it with GO): shown
    // as text, nothing of it runs or renders.
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll("#history-table td.c-what")].some((td) =>
          td.textContent.includes("<img src=x onerror=alert(1)>"),
        ),
      null,
      { timeout: STEP_MS },
    );
    step("inert", {
      title: await page.title(),
      scripts: await page.$$eval("script", (s) => s.map((e) => e.getAttribute("src"))),
      images: await page.$$eval("#live img", (i) => i.length),
      text: await page.$$eval("#history-table td.c-what", (tds) =>
        tds.map((td) => td.textContent).find((t) => t.includes("onerror")),
      ),
    });

    await page.goto(`${base}/?kind=ptrace&target=${targetPid}`, { waitUntil: "load" });
    const filtered = await rows(page, "history");
    step("filtered", {
      rows: filtered.length,
      kinds: [...new Set(filtered.map((r) => r.kind))],
      pids: [...new Set(filtered.map((r) => r.pid))],
      form_kind: await page.inputValue('#filters input[name="kind"]'),
    });

    // The peek is an alert: its own row, signed when it was written.
    const alertRow = `#history-table tr.d-alert[data-target-pid="${targetPid}"] a.detail`;
    const anyRow = `#history-table tr[data-target-pid="${targetPid}"] a.detail`;
    await page.click((await page.$(alertRow)) ? alertRow : anyRow);
    await page.waitForSelector(".verdict", { timeout: STEP_MS });
    // A record waits for the checkpoint that signs it (about a second)
    // unless it signs itself; until then it is `unsigned`. Reload until
    // the verdict is final, a bounded number of times.
    let verdict = await page.textContent(".verdict");
    for (let i = 0; i < 30 && verdict === "unsigned"; i++) {
      await page.waitForTimeout(1000);
      await page.reload({ waitUntil: "load" });
      verdict = await page.textContent(".verdict");
    }
    const json = await page.textContent("pre.json");
    const chain = await page.textContent("#chain tbody");
    await page.screenshot({
      path: path.join(shotDir, "review-detail.png"),
      clip: { x: 0, y: 0, width: 1400, height: 520 },
    });
    step("detail", {
      url: page.url(),
      verdict,
      chain,
      has_target: json.includes(`"pid": ${targetPid}`),
      kind_ptrace: json.includes('"kind": "ptrace"'),
    });
    step("errors", { errors });
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`review_page.js: ${e.stack || e}\n`);
    process.exit(1);
  },
);
