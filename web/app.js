// The page: pick, upload or draw an image, then watch step.onnx complete it in the browser, or
// sample_step.onnx draw a sample of it (mode "sample", for bundles that sample) beside the mean.
//
// Served by `python -m serve.web` (make web), which also serves onnxruntime-web's files from
// web/node_modules under /ort/ and the bundles under /bundles/<name>/. The finished run is kept
// in `window.rowgen` so a test (tests/web/test_web.py) can compare it with Python onnxruntime.

import * as ort from "/ort/ort.wasm.min.mjs";
import { MEAN, SAMPLE, mode, readSampling, setupModes, showModes } from "/mode.js";
import { clampKnownRows, completeOnce, loadBundle, sampleRows, stepRows } from "/rowgen.js";
import { paint, toPixels } from "/pictures.js";
import { NOISE_ALGORITHM } from "/sampling.js";

ort.env.wasm.wasmPaths = "/ort/"; // never a CDN: everything comes from this server
ort.env.wasm.numThreads = 1; // threads need cross-origin isolation; one is plenty for 28 rows
const SESSION_OPTIONS = { executionProviders: ["wasm"] };
const BACKEND = `onnxruntime-web ${ort.env.versions.web}, WebAssembly (CPU), 1 thread`;
const MAX_UPLOAD = 10 * 1024 * 1024;
const EMPTY_LEVEL = 0.02; // a drawing whose brightest pixel stays under this has nothing drawn

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
  if (bundle.sampleStep) {
    for await (const _ of sampleRows(ort, bundle, blank, n, { seed: 0, temperature: 1 })) { /* 27 */ }
  }
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

// Stream `rows` ([r, row] pairs) onto `canvas`; the whole completion, once the last row is in.
async function streamInto(canvas, rows, n, k) {
  const result = new Float32Array(n * n);
  for await (const [r, row] of rows) {
    result.set(row, r * n);
    paint(canvas, result, n, k, r + 1);
    await new Promise(requestAnimationFrame); // let the row appear before the next step
  }
  return result;
}

// Say on the pictures which one is the mean and which one a sample.
function label(sample) {
  $("mean-figure").hidden = !sample;
  $("output-tag").textContent = sample ? "a sample" : "mean";
  $("output-tag").classList.toggle("sample", Boolean(sample));
  const code = (text) => Object.assign(document.createElement("code"), { textContent: text });
  $("output-caption").replaceChildren(...(sample
    ? [`sample 1 of seed ${sample.seed} at temperature ${sample.temperature}, drawn by `,
      code("sample_step.onnx"), " row by row"]
    : ["the mean completion by ", code("step.onnx"), ", row by row"]));
}

const total = (times) => times.reduce((a, b) => a + b, 0);
const calls = (times) =>
  `${times.length} calls, ${total(times).toFixed(1)} ms (${(total(times) / times.length).toFixed(2)} ms per row)`;
const largestGap = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

async function run() {
  $("run").disabled = true;
  state.status = "running";
  state.result = state.error = null;
  try {
    if (state.tab === "draw") setInput(drawnPixels(), "drawing");
    if (state.tab === "upload" && !state.input) throw new Error("no image was uploaded: choose a file first");
    if (!state.input) throw new Error("no image chosen: pick a test image, upload one or draw");
    const sampling = mode() === SAMPLE ? { ...readSampling(), sample: 0 } : null; // named at once
    const name = $("bundle").value;
    say(`loading ${name}…`);
    const bundle = await getBundle(name);
    if (sampling && !bundle.sampleStep) {
      throw new Error(`${name} gives only the mean: choose "mean", or a bundle that samples`);
    }
    const n = bundle.contract.image_size;
    const k = clampKnownRows(bundle.contract, Number($("known").value));
    const image = state.input;
    label(sampling);
    const [stepTimes, sampleTimes] = [[], []];
    say(`${name}: the mean, with step.onnx…`);
    const steps = stepRows(ort, bundle, image, k, (ms) => stepTimes.push(ms));
    const mean = await streamInto(sampling ? $("mean") : $("output"), steps, n, k);
    let result = mean;
    if (sampling) {
      say(`${name}: a sample, with sample_step.onnx…`);
      const rows = sampleRows(ort, bundle, image, k, sampling, (ms) => sampleTimes.push(ms));
      result = await streamInto($("output"), rows, n, k);
    }
    const [once, onceMs] = await completeOnce(ort, bundle, image, k);
    Object.assign(state, { result: Array.from(result), mean: Array.from(mean), complete: Array.from(once),
      knownRows: k, bundle: name, mode: sampling ? SAMPLE : MEAN, stepMs: total(stepTimes),
      sampleMs: sampling ? total(sampleTimes) : null, completeMs: onceMs, backend: BACKEND,
      seed: sampling ? String(sampling.seed) : null, temperature: sampling?.temperature ?? null,
      sample: sampling?.sample ?? null });
    const cfg = bundle.manifest.config;
    $("stats").textContent = [
      `bundle      ${name}: ${cfg.cell} ${cfg.mode}, hidden ${cfg.hidden}, ${cfg.layers} layer(s)`,
      `input       ${state.origin}`,
      `rows        0–${k - 1} given, ${k}–${n - 1} generated`,
      ...(sampling ? [
        `mode        sample 1 of seed ${sampling.seed} at temperature ${sampling.temperature} (noise ${NOISE_ALGORITHM})`,
        `sample      sample_step.onnx, ${calls(sampleTimes)}`,
        `            max |sample − mean| ${largestGap(result, mean).toFixed(3)}`,
      ] : [`mode        mean`]),
      `step.onnx   ${calls(stepTimes)}${sampling ? ": the mean" : ""}`,
      `complete    complete.onnx, 1 call, ${onceMs.toFixed(1)} ms`,
      `            max |complete.onnx − step.onnx| ${largestGap(once, mean).toExponential(1)}`,
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
    setupModes(index);
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
$("bundle").addEventListener("change", () => showModes($("bundle").value));
$("run").addEventListener("click", run);
setupSketch();
start();
