// Running a rowgen bundle with onnxruntime-web: the contract's rules, in the browser.
//
// Tensor names, shapes and dtypes come from the bundle's manifest.json (its "contract" section,
// written by rowgen/contract.py), never from constants here. Every ONNX file is checked
// against its sha256 in the manifest before a session is made from it. A sampling bundle's
// sample_step.onnx streams a sample as step.onnx streams the mean, from seeded noise
// (./sampling.js).

import { sampleNoise } from "./sampling.js";

const STEP = "step.onnx";
const COMPLETE = "complete.onnx";
const SAMPLE_STEP = "sample_step.onnx"; // sampling bundles only

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function sha256(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// A shape from the contract with its dynamic (named) axes set to `batch`.
function dims(shape, batch) {
  return shape.map((d) => (typeof d === "string" ? batch : d));
}

function zeros(ort, spec, batch) {
  const shape = dims(spec.shape, batch);
  return new ort.Tensor(spec.dtype, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
}

// Fetch, verify and open a bundle's ONNX programs (step, complete, and sample_step when the
// manifest lists it); `base` is the bundle's URL folder. `sampleStep` is null for a bundle that
// gives only the mean.
export async function loadBundle(ort, base, options) {
  const manifest = JSON.parse(new TextDecoder().decode(await fetchBytes(`${base}manifest.json`)));
  const files = [STEP, COMPLETE, ...(manifest.files?.[SAMPLE_STEP] ? [SAMPLE_STEP] : [])];
  const sessions = {};
  for (const file of files) {
    const bytes = await fetchBytes(base + file);
    const want = manifest.files?.[file]?.sha256;
    const got = await sha256(bytes);
    if (got !== want) throw new Error(`${base}${file}: sha256 ${got} does not match the manifest`);
    sessions[file] = await ort.InferenceSession.create(bytes, options);
  }
  return {
    manifest,
    contract: manifest.contract,
    step: sessions[STEP],
    complete: sessions[COMPLETE],
    sampleStep: sessions[SAMPLE_STEP] ?? null,
  };
}

export function clampKnownRows(contract, k) {
  const [lo, hi] = contract.known_rows_range;
  return Math.min(hi, Math.max(lo, Math.round(k)));
}

// Drive a stateful program (`file`: step.onnx or sample_step.onnx) row by row: yield
// [r, row r of the completion] for r = 0..n-1, the state carried explicitly: zero state first;
// the call that receives row t returns row t+1. Known rows are copied, the rest are the model's
// own rows fed back. Inputs are `row`, the state, then what `extra(t, known)` gives (a sample
// step's noise and temperature, and whether row t is known where the step takes that); outputs
// `next_row`, then the state.
async function* driveRows(ort, bundle, file, session, image, knownRows, extra, onStep) {
  const { inputs, outputs } = bundle.contract[file];
  const n = bundle.contract.image_size;
  const k = clampKnownRows(bundle.contract, knownRows);
  const [rowOut, ...stateOuts] = outputs;
  const [rowIn, ...rest] = inputs;
  const stateIns = rest.slice(0, stateOuts.length);
  let state = stateIns.map((spec) => zeros(ort, spec, 1));
  let row = image.slice(0, n);
  yield [0, row];
  for (let t = 0; t < n - 1; t++) {
    const feeds = { [rowIn.name]: new ort.Tensor(rowIn.dtype, row, dims(rowIn.shape, 1)), ...extra(t, t < k) };
    stateIns.forEach((spec, i) => { feeds[spec.name] = state[i]; });
    const start = performance.now();
    const out = await session.run(feeds);
    onStep(performance.now() - start);
    state = stateOuts.map((spec) => out[spec.name]);
    row = t + 1 < k ? image.slice((t + 1) * n, (t + 2) * n) : out[rowOut.name].data.slice();
    yield [t + 1, row];
  }
}

// The mean completion row by row through step.onnx. `image` is a Float32Array of n*n pixels in
// [0, 1]; `onStep(ms)` receives each call's time.
export function stepRows(ort, bundle, image, knownRows, onStep = () => {}) {
  return driveRows(ort, bundle, STEP, bundle.step, image, knownRows, () => ({}), onStep);
}

// Sample number `sample` (0, 1, ...) of `seed` at `temperature`, row by row through
// sample_step.onnx: the call that receives row t takes slice t of the sample's noise. Equal to
// sample.onnx given drawNoise(seed, ...)'s noise, and to the app's sample of that seed.
export function sampleRows(ort, bundle, image, knownRows, { seed, sample = 0, temperature }, onStep = () => {}) {
  if (!bundle.sampleStep) {
    throw new Error(`${bundle.manifest.name} gives only the mean: its bundle has no ${SAMPLE_STEP}`);
  }
  const { inputs, outputs } = bundle.contract[SAMPLE_STEP];
  const [noiseIn, temperatureIn] = inputs.slice(-2);
  // A head that holds a class takes one more input between the state and the noise: 1 where the
  // row it reads is known, 0 where it was drawn (the class is decided again at each known row).
  const [knownIn] = inputs.slice(outputs.length, -2);
  const noiseDim = noiseIn.shape[1];
  const steps = bundle.contract.image_size - 1; // one noise slice per row that can be generated
  const noise = sampleNoise(seed, sample, steps, noiseDim);
  const scale = new ort.Tensor(temperatureIn.dtype, Float32Array.of(temperature), dims(temperatureIn.shape, 1));
  const extra = (t, known) => ({
    [noiseIn.name]: new ort.Tensor(noiseIn.dtype, noise.slice(t * noiseDim, (t + 1) * noiseDim), dims(noiseIn.shape, 1)),
    [temperatureIn.name]: scale,
    ...(knownIn && {
      [knownIn.name]: new ort.Tensor(knownIn.dtype, Float32Array.of(known ? 1 : 0), dims(knownIn.shape, 1)),
    }),
  });
  return driveRows(ort, bundle, SAMPLE_STEP, bundle.sampleStep, image, knownRows, extra, onStep);
}

// The whole completion in one call of complete.onnx; returns [pixels, milliseconds].
export async function completeOnce(ort, bundle, image, knownRows) {
  const { inputs, outputs } = bundle.contract[COMPLETE];
  const [imageIn, knownIn] = inputs;
  const k = clampKnownRows(bundle.contract, knownRows);
  const known = knownIn.dtype === "int64" ? BigInt64Array.of(BigInt(k)) : Int32Array.of(k);
  const feeds = {
    [imageIn.name]: new ort.Tensor(imageIn.dtype, image, dims(imageIn.shape, 1)),
    [knownIn.name]: new ort.Tensor(knownIn.dtype, known, dims(knownIn.shape, 1)),
  };
  const start = performance.now();
  const out = await bundle.complete.run(feeds);
  return [out[outputs[0].name].data, performance.now() - start];
}
