// Drives the gateway's page in headless Chromium (playwright-core, the system's chromium).
//
//   node page_check.mjs URL VIDEO LIVE_PNG UPLOAD_PNG [API_KEY]
//
// Live tab: types the key, picks VIDEO in the file input, waits until the stream ended, reads
// the stats and the drawn track ids, screenshots LIVE_PNG; then streams the fake camera with the
// webcam button and stops it. Upload tab: uploads VIDEO, waits for
// the result, lets the video play with the poses drawn over it, screenshots UPLOAD_PNG.
// Prints one JSON object (what the page showed) on stdout; exits 1 with a message on failure.
import { chromium } from "playwright-core";

const [url, video, livePng, uploadPng, key = ""] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT_MS = Number(process.env.PAGE_TIMEOUT_MS || 120000);

const browser = await chromium.launch({
  executablePath,
  // The fake camera (a generated test pattern) stands in for the webcam.
  args: [
    "--no-sandbox",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
  ],
});
const out = { console: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => out.console.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 20000 });
  await page.fill("#api-key", key);

  await page.setInputFiles("#live-file", video);
  await page.waitForFunction(() => ["ended", "closed"].includes(document.body.dataset.live), null, {
    timeout: TIMEOUT_MS,
  });
  out.live = await page.evaluate(() => ({
    status: document.body.dataset.live,
    session: document.body.dataset.session,
    ids: document.getElementById("track-ids").dataset.ids,
    frames: Number(document.getElementById("live-frames").textContent),
    dropped: Number(document.getElementById("live-dropped").textContent),
    fps: document.getElementById("live-fps").textContent,
    latency: document.getElementById("live-latency").textContent,
    error: document.getElementById("error").textContent,
  }));
  await page.screenshot({ path: livePng, fullPage: true });

  // The webcam button: stream the fake camera until a few results came back, then stop.
  await page.click("#live-webcam");
  await page.waitForFunction(() => document.body.dataset.live === "streaming", null, { timeout: TIMEOUT_MS });
  await page.waitForFunction(() => Number(document.getElementById("live-frames").textContent) >= 5, null, {
    timeout: TIMEOUT_MS,
  });
  await page.click("#live-stop");
  await page.waitForFunction(() => ["ended", "closed"].includes(document.body.dataset.live), null, {
    timeout: TIMEOUT_MS,
  });
  out.webcam = await page.evaluate(() => ({
    status: document.body.dataset.live,
    session: document.body.dataset.session,
    frames: Number(document.getElementById("live-frames").textContent),
    error: document.getElementById("error").textContent,
  }));

  await page.click("#tab-upload");
  await page.setInputFiles("#upload-file", video);
  await page.click("#upload-start");
  await page.waitForFunction(() => ["playing", "failed"].includes(document.body.dataset.upload), null, {
    timeout: TIMEOUT_MS,
  });
  await page
    .waitForFunction(() => Number(document.getElementById("upload-canvas").dataset.drawn || 0) >= 10, null, {
      timeout: 30000,
    })
    .catch(() => {});
  out.upload = await page.evaluate(() => ({
    status: document.body.dataset.upload,
    video: document.body.dataset.video,
    ids: document.getElementById("upload-track-ids").dataset.ids,
    frames: document.getElementById("upload-frames").textContent,
    uploaded: document.getElementById("upload-progress").value,
    drawn: Number(document.getElementById("upload-canvas").dataset.drawn || 0),
    error: document.getElementById("error").textContent,
  }));
  await page.evaluate(() => document.getElementById("upload-video").pause());
  await page.screenshot({ path: uploadPng, fullPage: true });
  console.log(JSON.stringify(out));
} catch (err) {
  console.log(JSON.stringify({ ...out, failure: String(err) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
