// The gateway's page: stream a file or the webcam over WS /v1/streams, or upload a clip.
// Plain ES module, no dependencies. Poses are in original-frame pixels (x, y, score);
// the canvases are sized to the frame, so they are drawn as they come.

const $ = (id) => document.getElementById(id);
const HEADER_BYTES = 8; // a frame message: uint64 big-endian frame index, then the JPEG
const JPEG_QUALITY = 0.85;
const HEAD_KEYPOINTS = [0, 1, 2, 3, 4]; // nose, eyes, ears: the id is written above them
const MIN_KEYPOINT_SCORE = 0.2; // keypoints below this are not drawn (MoveNet's low scores are guesses)

let skeleton = null; // /page/skeleton.json: keypoints, edges, palette, subprotocols

function apiKey() {
  return $("api-key").value.trim();
}

function showError(message) {
  $("error").textContent = message;
}

function colour(trackId) {
  const [r, g, b] = trackId < 0 ? skeleton.untracked : skeleton.palette[trackId % skeleton.palette.length];
  return `rgb(${r}, ${g}, ${b})`;
}

// Draw each pose's limbs and joints in its track's colour and its id above its head.
function drawPoses(ctx, poses) {
  const scale = Math.max(1, ctx.canvas.width / 640);
  for (const pose of poses) {
    const k = pose.keypoints;
    const c = colour(pose.track_id);
    ctx.strokeStyle = c;
    ctx.fillStyle = c;
    ctx.lineWidth = 2.5 * scale;
    for (const [a, b] of skeleton.edges) {
      if (k[a][2] < MIN_KEYPOINT_SCORE || k[b][2] < MIN_KEYPOINT_SCORE) continue;
      ctx.beginPath();
      ctx.moveTo(k[a][0], k[a][1]);
      ctx.lineTo(k[b][0], k[b][1]);
      ctx.stroke();
    }
    for (const [x, y, s] of k) {
      if (s < MIN_KEYPOINT_SCORE) continue;
      ctx.beginPath();
      ctx.arc(x, y, 3 * scale, 0, 2 * Math.PI);
      ctx.fill();
    }
    const head = HEAD_KEYPOINTS.map((i) => k[i]).filter((p) => p[2] >= MIN_KEYPOINT_SCORE);
    const [hx, hy] = head.length
      ? [head.reduce((s, p) => s + p[0], 0) / head.length, Math.min(...head.map((p) => p[1]))]
      : [(pose.box[0] + pose.box[2]) / 2, pose.box[1]];
    if (pose.track_id >= 0) {
      ctx.font = `bold ${Math.round(14 * scale)}px sans-serif`;
      ctx.textAlign = "center";
      ctx.lineWidth = 3 * scale;
      ctx.strokeStyle = "#000";
      ctx.strokeText(String(pose.track_id), hx, hy - 8 * scale);
      ctx.fillText(String(pose.track_id), hx, hy - 8 * scale);
    }
  }
}

function showIds(element, ids) {
  const sorted = [...ids].sort((a, b) => a - b);
  element.dataset.ids = sorted.join(",");
  element.textContent = sorted.length ? sorted.join(" ") : "-";
}

// ---- live streams -------------------------------------------------------------------------

class LiveSession {
  constructor(video, { mode, maxInflight, key }) {
    this.video = video;
    this.mode = mode;
    this.maxInflight = maxInflight;
    this.key = key;
    this.canvas = $("live-canvas");
    this.capture = document.createElement("canvas");
    this.nextIndex = 0;
    this.sent = 0; // frame messages sent on this connection
    this.answered = 0; // of those: answered, dropped by the server or refused
    this.credit = Infinity; // ordered mode: the server's cumulative credit
    this.serverDropped = 0;
    this.expired = 0; // results that came back frame_expired (past the live budget, not run)
    this.clientDropped = 0; // frames not sent: too many in flight
    this.results = 0;
    this.sentAt = new Map(); // frame index -> performance.now() when sent
    this.images = new Map(); // frame index -> ImageBitmap of the frame as sent (drawn under its poses)
    this.resultTimes = [];
    this.latencies = [];
    this.ids = new Set();
    this.sending = Promise.resolve();
    this.ended = false;
    this.opened = false; // the server's ready message came
  }

  status(text) {
    $("live-status").textContent = text;
    document.body.dataset.live = text;
  }

  start() {
    const protocols = [skeleton.subprotocol];
    if (this.key) protocols.push(skeleton.key_subprotocol_prefix + this.key);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}/v1/streams`, protocols);
    this.ws.binaryType = "arraybuffer";
    const w = this.video.videoWidth;
    const h = this.video.videoHeight;
    this.canvas.width = this.capture.width = w;
    this.canvas.height = this.capture.height = h;
    this.captureCtx = this.capture.getContext("2d");
    this.ctx = this.canvas.getContext("2d");
    this.status("connecting");
    this.ws.onopen = () =>
      this.ws.send(JSON.stringify({ fps: this.fps(), width: w, height: h, mode: this.mode }));
    this.ws.onmessage = (event) => this.onMessage(JSON.parse(event.data));
    this.ws.onclose = (event) => {
      this.stopVideo();
      if (event.code === 1000) this.status("ended");
      else {
        this.status("closed");
        showError(`stream closed: ${event.code} ${event.reason || "(connection lost)"}`);
      }
    };
  }

  fps() {
    // Browsers do not expose a file's frame rate: the indices are numbered at this rate for the
    // timestamps, while capture follows the video's own frames (requestVideoFrameCallback).
    return 25;
  }

  onMessage(msg) {
    if ("credit" in msg) this.credit = Math.max(this.credit === Infinity ? 0 : this.credit, msg.credit);
    if ("session" in msg && "last_index" in msg) {
      this.session = msg.session;
      document.body.dataset.session = msg.session;
      if (!("credit" in msg)) this.credit = Infinity;
      this.opened = true;
      if (this.ended) {
        this.ws.send(JSON.stringify({ end: true })); // stopped before the server was ready
        return;
      }
      this.status("streaming");
      this.startVideo();
      return;
    }
    if ("end" in msg) {
      this.status("ending");
      return;
    }
    if ("seq" in msg) {
      this.onResult(msg);
    } else if ("error" in msg) {
      if (msg.error.code === "frame_out_of_order") this.answered += 1;
      showError(`${msg.error.code}: ${msg.error.message}`);
    }
  }

  onResult(result) {
    const now = performance.now();
    this.answered += 1;
    const drops = (result.dropped || 0) - this.serverDropped;
    if (drops > 0) {
      this.serverDropped += drops;
      this.answered += drops;
    }
    // A frame the workers reached after its live latency budget comes back without poses: it counts as
    // dropped, and the last drawn frame stays on screen.
    const expired = result.error !== undefined && result.error.code === "frame_expired";
    if (expired) {
      this.expired += 1;
    } else {
      this.results += 1;
      const sentAt = this.sentAt.get(result.frame_index);
      if (sentAt !== undefined) this.latencies.push(now - sentAt);
      this.resultTimes.push(now);
      const image = this.images.get(result.frame_index);
      if (image) this.ctx.drawImage(image, 0, 0);
    }
    for (const [index, bitmap] of this.images) {
      if (index > result.frame_index) break;
      bitmap.close();
      this.images.delete(index);
      this.sentAt.delete(index);
    }
    if (!expired && result.poses) {
      drawPoses(this.ctx, result.poses);
      for (const p of result.poses) if (p.track_id >= 0) this.ids.add(p.track_id);
    }
    this.showStats(now);
  }

  showStats(now) {
    while (this.resultTimes.length && this.resultTimes[0] < now - 1000) this.resultTimes.shift();
    this.latencies = this.latencies.slice(-30);
    const mean = this.latencies.reduce((s, x) => s + x, 0) / Math.max(1, this.latencies.length);
    $("live-fps").textContent = this.resultTimes.length.toFixed(1);
    $("live-latency").textContent = this.latencies.length ? mean.toFixed(0) : "-";
    $("live-dropped").textContent = String(this.serverDropped + this.clientDropped + this.expired);
    $("live-frames").textContent = String(this.results);
    showIds($("track-ids"), this.ids);
  }

  room() {
    return this.sent - this.answered < this.maxInflight && this.sent < this.credit;
  }

  startVideo() {
    const onFrame = () => {
      if (this.ended) return;
      this.onVideoFrame();
      this.video.requestVideoFrameCallback(onFrame);
    };
    this.video.requestVideoFrameCallback(onFrame);
    this.video.onended = () => this.end();
    this.video.play().catch((err) => showError(`cannot play the video: ${err}`));
  }

  onVideoFrame() {
    if (!this.room()) {
      this.clientDropped += 1;
      $("live-dropped").textContent = String(this.serverDropped + this.clientDropped + this.expired);
      return;
    }
    const index = this.nextIndex++;
    this.sent += 1;
    this.captureCtx.drawImage(this.video, 0, 0, this.capture.width, this.capture.height);
    const bitmap = createImageBitmap(this.capture);
    const blob = new Promise((resolve) => this.capture.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    // Sends are chained so that frames go out in index order, and the end after the last.
    this.sending = this.sending.then(async () => {
      const [image, jpeg] = await Promise.all([bitmap, blob]);
      const body = new Uint8Array(await jpeg.arrayBuffer());
      const message = new Uint8Array(HEADER_BYTES + body.length);
      new DataView(message.buffer).setBigUint64(0, BigInt(index));
      message.set(body, HEADER_BYTES);
      if (this.ws.readyState !== WebSocket.OPEN) return image.close();
      this.images.set(index, image);
      this.sentAt.set(index, performance.now());
      this.ws.send(message);
    });
  }

  end() {
    if (this.ended) return;
    this.ended = true;
    this.sending = this.sending.then(() => {
      // Before the ready message the end goes out when it comes (onMessage).
      if (this.opened && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ end: true }));
    });
  }

  stopVideo() {
    this.ended = true;
    this.video.pause();
    const tracks = this.video.srcObject ? this.video.srcObject.getTracks() : [];
    for (const t of tracks) t.stop();
  }
}

let live = null;

async function startLive(setSource) {
  showError("");
  if (live && !live.ended) live.end();
  const video = $("live-video");
  await setSource(video);
  await new Promise((resolve, reject) => {
    if (video.readyState >= 1) return resolve();
    video.onloadedmetadata = resolve;
    video.onerror = () => reject(new Error("the browser cannot decode this video"));
  });
  live = new LiveSession(video, {
    mode: $("live-mode").value,
    maxInflight: Math.max(1, Number($("live-inflight").value) || 4),
    key: apiKey(),
  });
  live.showStats(performance.now()); // this session's figures, from zero
  $("live-stop").disabled = false;
  live.start();
}

$("live-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (!file) return;
  startLive(async (video) => {
    video.srcObject = null;
    video.src = URL.createObjectURL(file);
  }).catch((err) => showError(String(err)));
});

$("live-webcam").addEventListener("click", () => {
  startLive(async (video) => {
    video.src = "";
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  }).catch((err) => showError(`webcam: ${err}`));
});

$("live-stop").addEventListener("click", () => {
  if (live) {
    live.video.pause();
    live.end();
  }
});

// ---- uploads ------------------------------------------------------------------------------

function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status} ${body.error.code}: ${body.error.message}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function uploadStatus(text) {
  $("upload-status").textContent = text;
  document.body.dataset.upload = text;
}

function sendUpload(file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest(); // (fetch cannot report upload progress)
    xhr.open("POST", "/v1/videos");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) $("upload-progress").value = e.loaded / e.total;
    };
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {}
      if (xhr.status === 202) resolve(body.id);
      else reject(new Error(body.error ? `${xhr.status} ${body.error.code}: ${body.error.message}` : `HTTP ${xhr.status}`));
    };
    xhr.onerror = () => reject(new Error("the upload failed (network error)"));
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}

async function waitForVideo(id) {
  let delay = 100;
  for (;;) {
    const response = await fetch(`/v1/videos/${id}`, { headers: authHeaders() });
    if (!response.ok) throw new Error(await errorText(response));
    const status = await response.json();
    $("upload-frames").textContent = `${status.frames_done}/${status.frames_total}`;
    $("upload-processing").value = status.frames_total ? status.frames_done / status.frames_total : 0;
    uploadStatus(status.status);
    if (status.status === "done") return status;
    if (status.status === "failed") throw new Error(`the video failed: ${status.error}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 2000);
  }
}

// The frame shown at media time t: the last one whose timestamp is not after it.
function frameAt(frames, t) {
  let lo = 0;
  let hi = frames.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (frames[mid].timestamp <= t + 1e-3) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best < 0 ? null : frames[best];
}

function playWithPoses(video, frames) {
  const canvas = $("upload-canvas");
  const ctx = canvas.getContext("2d");
  let drawn = 0;
  const draw = (_now, meta) => {
    const frame = frameAt(frames, meta ? meta.mediaTime : video.currentTime);
    canvas.width = frames[0].width || video.videoWidth;
    canvas.height = frames[0].height || video.videoHeight;
    if (frame) {
      drawPoses(ctx, frame.poses);
      canvas.dataset.frame = String(frame.frame_index);
      canvas.dataset.drawn = String(++drawn);
    }
    video.requestVideoFrameCallback(draw);
  };
  video.requestVideoFrameCallback(draw);
  video.currentTime = 0;
  video.play().catch((err) => showError(`cannot play the video: ${err}`));
}

$("upload-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  $("upload-start").disabled = !file;
  if (file) $("upload-video").src = URL.createObjectURL(file);
});

$("upload-start").addEventListener("click", async () => {
  const file = $("upload-file").files[0];
  showError("");
  $("upload-start").disabled = true;
  try {
    uploadStatus("uploading");
    const id = await sendUpload(file);
    document.body.dataset.video = id;
    $("upload-progress").value = 1;
    await waitForVideo(id);
    const response = await fetch(`/v1/videos/${id}/poses`, { headers: authHeaders() });
    if (!response.ok) throw new Error(await errorText(response));
    const lines = (await response.text()).split("\n").filter((l) => l.trim());
    const frames = lines.map((l) => JSON.parse(l)).sort((a, b) => a.timestamp - b.timestamp);
    const ids = new Set(frames.flatMap((f) => f.poses.map((p) => p.track_id)).filter((i) => i >= 0));
    showIds($("upload-track-ids"), ids);
    uploadStatus("playing");
    if (frames.length) playWithPoses($("upload-video"), frames);
  } catch (err) {
    uploadStatus("failed");
    showError(String(err.message || err));
  } finally {
    $("upload-start").disabled = false;
  }
});

// ---- tabs ---------------------------------------------------------------------------------

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== `panel-${tab.dataset.panel}`;
  });
}

skeleton = await (await fetch("/page/skeleton.json")).json();
document.body.dataset.ready = "1";
