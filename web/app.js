// The page: pick, upload or draw an image, then watch step.onnx complete it in the browser.
//
// Served by `python -m serve.web` (make web), which also serves onnxruntime-web's files from
// web/node_modules under /ort/ and the bundles under /bundles/<name>/. The finished run is kept
// in `window.rowgen` so a test (tests/web/test_web.py) can compare it with Python onnxruntime.

import * as ort from "/ort/ort.wasm.min.mjs";
import { clampKnownRows, completeOnce, loadBundle, stepRows } from "/rowgen.js";

ort.env.wasm.wasmPaths = "/ort/"; // never a CDN: everything comes from this server
ort.env.wasm.numThreads = 1; // threads need cross-origin isolation; one is plenty for 28 rows
const SESSION_OPTIONS = { executionProviders: ["wasm"] };
const BACKEND = `onnxruntime-web ${ort.env.versions.web}, WebAssembly (CPU), 1 thread`;
const MAX_UPLOAD = 10 * 1024 * 1024;
const EMPTY_LEVEL = 0.02; // a drawing whose brightest pixel stays under this has nothing drawn
const BOUNDARY = "#e62828";

const $ = (id) => document.getElementById(id);
const state = window.rowgen = { status: "loading", tab: "gallery", input: null, result: null };
const bundles = new Map(); // name -> promise of a loaded bundle
let galleryImages = []; // the app's gallery, from /gallery.json

function say(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
  if (error) state.error = text;
}

// One call of each program on a blank image, so the first timing shown is not the warm-up's.
async function warm(bundle) {
  const n = bundle.contract.image_size;
  const blank = new Float32Array(n * n);
  await completeOnce(ort, bundle, blank, n);
  for await (const _ of stepRows(ort, bundle, blank, n)) { /* every row is known: 27 calls */ }
  return bundle;
}

async function getBundle(name) {
  if (!bundles.has(name)) bundles.set(name, loadBundle(ort, `/bundles/${name}/`, SESSION_OPTIONS).then(warm));
  try {
    return await bundles.get(name);
  } catch (err) {
    bundles.delete(name); // a later click tries again
    throw err;
  }
}

// Paint pixels in [0, 1] (row-major, n x n, the first `rows` rows) on a canvas, enlarged with
// crisp pixels, with a red line where generation starts.
function paint(canvas, pixels, n, knownRows, rows = n) {
  const small = new OffscreenCanvas(n, n);
  const picture = new ImageData(n, n);
  for (let i = 0; i < rows * n; i++) {
    const v = Math.round(Math.min(1, Math.max(0, pixels[i])) * 255);
    picture.data.set([v, v, v, 255], 4 * i);
  }
  small.getContext("2d").putImageData(picture, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  if (knownRows !== undefined) {
    const y = Math.round((knownRows * canvas.height) / n);
    ctx.fillStyle = BOUNDARY;
    ctx.fillRect(0, y - 1, canvas.width, 2);
  }
}

// Any drawable (image, canvas) -> Float32Array n*n: fitted with its aspect kept, centred on
// black, grey = ITU-R 601 luma, optionally inverted (dark-on-light drawings; the white
// background and margins then become black).
function toPixels(source, width, height, n, invert) {
  const canvas = new OffscreenCanvas(n, n);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = invert ? "#fff" : "#000"; // transparency lies on the background
  ctx.fillRect(0, 0, n, n);
  const scale = Math.min(n / width, n / height);
  const [w, h] = [width * scale, height * scale];
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, (n - w) / 2, (n - h) / 2, w, h);
  const rgba = ctx.getImageData(0, 0, n, n).data;
  const pixels = new Float32Array(n * n);
  for (let i = 0; i < n * n; i++) {
    const luma = (rgba[4 * i] * 299 + rgba[4 * i + 1] * 587 + rgba[4 * i + 2] * 114) / 1000;
    pixels[i] = (invert ? 255 - luma : luma) / 255;
  }
  return pixels;
}

const chosen = { gallery: null, upload: null }; // each tab keeps its own image

function setInput(pixels, origin) {
  state.input = pixels;
  state.origin = origin;
  if (state.tab in chosen) chosen[state.tab] = { pixels, origin };
  showInput();
}

function showInput() {
  if (state.input) paint($("input"), state.input, size(), Number($("known").value));
}

let imageSize = null; // the first bundle's contract.image_size, once it has loaded

function size() {
  if (!imageSize) throw new Error("still loading the first bundle: try again in a moment");
  return imageSize;
}

async function uploaded(file) {
  state.input = chosen.upload = null;
  if (!file) return say("no file was chosen: choose an image file first", true);
  if (file.size === 0) return say(`${file.name} is empty`, true);
  if (file.size > MAX_UPLOAD) {
    return say(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the limit is 10 MiB`, true);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return say(`${file.name} is not an image this browser can decode (PNG, JPEG, WebP, GIF, BMP)`, true);
  }
  try {
    setInput(toPixels(bitmap, bitmap.width, bitmap.height, size(), $("invert").checked), file.name);
    say(`${file.name}: ready`);
  } catch (err) {
    say(err.message, true);
  } finally {
    bitmap.close();
  }
}

function drawnPixels() {
  const sketch = $("sketch");
  const pixels = toPixels(sketch, sketch.width, sketch.height, size(), false);
  if (Math.max(...pixels) < EMPTY_LEVEL) throw new Error("the drawing is empty: draw something first");
  return pixels;
}

async function run() {
  $("run").disabled = true;
  state.status = "running";
  state.result = state.error = null;
  try {
    if (state.tab === "draw") setInput(drawnPixels(), "drawing");
    if (state.tab === "upload" && !state.input) throw new Error("no image was uploaded: choose a file first");
    if (!state.input) throw new Error("no image chosen: pick a test image, upload one or draw");
    const name = $("bundle").value;
    say(`loading ${name}…`);
    const bundle = await getBundle(name);
    const n = bundle.contract.image_size;
    const k = clampKnownRows(bundle.contract, Number($("known").value));
    const image = state.input;
    const result = new Float32Array(n * n);
    const times = [];
    say(`${name}: completing with step.onnx…`);
    for await (const [r, row] of stepRows(ort, bundle, image, k, (ms) => times.push(ms))) {
      result.set(row, r * n);
      paint($("output"), result, n, k, r + 1);
      await new Promise(requestAnimationFrame); // let the row appear before the next step
    }
    const [once, onceMs] = await completeOnce(ort, bundle, image, k);
    const gap = once.reduce((m, v, i) => Math.max(m, Math.abs(v - result[i])), 0);
    const stepMs = times.reduce((a, b) => a + b, 0);
    Object.assign(state, { result: Array.from(result), complete: Array.from(once), knownRows: k,
      bundle: name, stepMs, completeMs: onceMs, backend: BACKEND });
    const cfg = bundle.manifest.config;
    $("stats").textContent = [
      `bundle      ${name}: ${cfg.cell} ${cfg.mode}, hidden ${cfg.hidden}, ${cfg.layers} layer(s)`,
      `input       ${state.origin}`,
      `rows        0–${k - 1} given, ${k}–${n - 1} generated`,
      `step.onnx   ${times.length} calls, ${stepMs.toFixed(1)} ms (${(stepMs / times.length).toFixed(2)} ms per row)`,
      `complete    complete.onnx, 1 call, ${onceMs.toFixed(1)} ms`,
      `            max |complete.onnx − step.onnx| ${gap.toExponential(1)}`,
      `backend     ${BACKEND}`,
    ].join("\n");
    say(`${name}: done`);
    state.status = "done";
  } catch (err) {
    say(err.message ?? String(err), true);
    state.status = "error";
  } finally {
    $("run").disabled = false;
  }
}

function chooseTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll("[data-tab]")) b.setAttribute("aria-selected", b.dataset.tab === tab);
  for (const t of ["gallery", "upload", "draw"]) $(`tab-${t}`).hidden = t !== tab;
  if (tab === "draw") return; // the drawing is read when Complete is clicked
  state.input = chosen[tab]?.pixels ?? null;
  state.origin = chosen[tab]?.origin;
  if (state.input) showInput();
  else $("input").getContext("2d").clearRect(0, 0, $("input").width, $("input").height);
}

function buildGallery(n) {
  for (const [i, image] of galleryImages.entries()) {
    const button = document.createElement("button");
    button.title = `${image.label} (test image ${image.index})`;
    button.dataset.index = i;
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = n;
    const pixels = Float32Array.from(image.pixels, (v) => v / 255);
    paint(canvas, pixels, n);
    button.append(canvas);
    button.addEventListener("click", () => {
      document.querySelectorAll("#gallery .chosen").forEach((b) => b.classList.remove("chosen"));
      button.classList.add("chosen");
      setInput(pixels, `${image.label}, test image ${image.index}`);
      say(`chosen: ${image.label}`);
    });
    $("gallery").append(button);
  }
}

function setupSketch() {
  const sketch = $("sketch");
  const ctx = sketch.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, sketch.width, sketch.height); };
  clear();
  Object.assign(ctx, { strokeStyle: "#fff", lineWidth: 22, lineCap: "round", lineJoin: "round" });
  let last = null;
  const at = (e) => [e.offsetX * sketch.width / sketch.clientWidth, e.offsetY * sketch.height / sketch.clientHeight];
  sketch.addEventListener("pointerdown", (e) => { last = at(e); sketch.setPointerCapture(e.pointerId); });
  sketch.addEventListener("pointermove", (e) => {
    if (!last) return;
    const next = at(e);
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
  });
  sketch.addEventListener("pointerup", () => { last = null; });
  $("clear").addEventListener("click", clear);
}

async function start() {
  try {
    const [index, gallery] = await Promise.all(["/bundles.json", "/gallery.json"].map(
      async (url) => (await fetch(url)).json()));
    for (const name of index.bundles) $("bundle").append(new Option(name, name));
    const first = await getBundle(index.bundles[0]);
    const n = first.contract.image_size;
    const [lo, hi] = first.contract.known_rows_range;
    Object.assign($("known"), { min: lo, max: hi });
    imageSize = n;
    galleryImages = gallery.images;
    buildGallery(n);
    say(`ready: ${index.bundles.length} bundle(s); ${BACKEND}`);
    state.status = "ready";
  } catch (err) {
    say(`could not start: ${err.message ?? err}`, true);
    state.status = "error";
  }
}

for (const b of document.querySelectorAll("[data-tab]")) b.addEventListener("click", () => chooseTab(b.dataset.tab));
$("known").addEventListener("input", () => { $("known-value").textContent = $("known").value; showInput(); });
$("file").addEventListener("change", () => uploaded($("file").files[0]));
$("invert").addEventListener("change", () => $("file").files[0] && uploaded($("file").files[0]));
$("run").addEventListener("click", run);
setupSketch();
start();
