// What the examples share: reading a bundle's manifest, checking a file's sha256, PNG in/out,
// and driving a stateful program (step.onnx, sample_step.onnx) row by row.
//
// Tensor names, shapes and dtypes come from manifest.json's "contract" section (written by
// rowgen/contract.py), never from constants typed here.

import * as ort from "onnxruntime-node";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PNG } from "pngjs";

export class UsageError extends Error {}

// The common command line: <bundle-folder> <image.png> [--known-rows K] [--out P] [--json J],
// plus a script's own string `options` (their values come back under `values`).
export function readArgs(usage, options = {}) {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        "known-rows": { type: "string", default: "14" },
        out: { type: "string" },
        json: { type: "string" },
        help: { type: "boolean", short: "h" },
        ...options,
      },
    });
  } catch (err) {
    throw new UsageError(`${err.message}\n${usage}`); // an unknown option, a missing value
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length !== 2) throw new UsageError(usage);
  const knownRows = Number(values["known-rows"]);
  if (!Number.isInteger(knownRows)) throw new UsageError(`--known-rows must be an integer\n${usage}`);
  return { bundle: positionals[0], image: positionals[1], knownRows, out: values.out, json: values.json, values };
}

// manifest.json of the bundle folder, and the path of one of its files after its sha256 check.
export function openBundle(folder) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(folder, "manifest.json"), "utf8"));
  } catch (err) {
    throw new UsageError(`${folder} is not a rowgen bundle (manifest.json: ${err.message})`);
  }
  const file = (name) => {
    const path = join(folder, name);
    const got = createHash("sha256").update(readFileSync(path)).digest("hex");
    if (got !== manifest.files?.[name]?.sha256) {
      throw new UsageError(`${path} does not match its sha256 in the manifest (altered?)`);
    }
    return path;
  };
  return { manifest, contract: manifest.contract, file };
}

export function clampKnownRows(contract, k) {
  const [lo, hi] = contract.known_rows_range;
  return Math.min(hi, Math.max(lo, k));
}

// A shape from the contract with its dynamic (named) axes set to `batch`.
export function dims(shape, batch) {
  return shape.map((d) => (typeof d === "string" ? batch : d));
}

function zeros(spec) {
  const shape = dims(spec.shape, 1);
  return new ort.Tensor(spec.dtype, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
}

// Complete `image` by calling a stateful program once per row; `spec` is its contract entry
// (inputs: row, the state, then what `extra(t, known)` gives, known saying whether row t is a
// known row; outputs: next_row, then the state):
//   - the state starts at zeros, meaning "top of the image";
//   - feed rows 0, 1, ... in turn: the call that receives row t returns row t+1 and the next
//     state;
//   - known rows are copied from the image; below them, each returned row is the next input.
// The state's names and shapes come from the manifest: h and c for an LSTM, h for a GRU or
// RNN, a 14-row window for the course's window model, and sample_step.onnx's `kind` (the class
// its draws hold) where it has one. Nothing here depends on which.
export async function driveRows(session, spec, image, n, k, extra = () => ({})) {
  const [rowOut, ...stateOuts] = spec.outputs; // next_row, then the state after the step
  const [rowIn, ...rest] = spec.inputs; // row, then the state (h, c / h / window), then extras
  const stateIns = rest.slice(0, stateOuts.length);
  const completed = new Float32Array(n * n);
  completed.set(image.subarray(0, n), 0); // row 0 is always known
  let state = stateIns.map(zeros);
  let row = image.subarray(0, n);
  for (let t = 0; t < n - 1; t++) {
    const feeds = { [rowIn.name]: new ort.Tensor(rowIn.dtype, row, dims(rowIn.shape, 1)), ...extra(t, t < k) };
    stateIns.forEach((spec, i) => {
      feeds[spec.name] = state[i];
    });
    const out = await session.run(feeds);
    state = stateOuts.map((spec) => out[spec.name]); // h_out becomes the next call's h, ...
    row = t + 1 < k ? image.subarray((t + 1) * n, (t + 2) * n) : out[rowOut.name].data;
    completed.set(row, (t + 1) * n);
  }
  return completed;
}

// An n x n PNG -> Float32Array of n*n grey values in [0, 1], white object on black.
// Colour is reduced with ITU-R 601 luma; transparent pixels lie on black.
export function readPng(path, n) {
  let png;
  try {
    png = PNG.sync.read(readFileSync(path));
  } catch (err) {
    throw new UsageError(`${path} is not a PNG this example can read (${err.message})`);
  }
  if (png.width !== n || png.height !== n) {
    throw new UsageError(
      `${path} is ${png.width}x${png.height}; these examples take ${n}x${n} PNGs ` +
        "(the web page and the server fit any image)",
    );
  }
  const pixels = new Float32Array(n * n);
  for (let i = 0; i < n * n; i++) {
    const [r, g, b, a] = png.data.subarray(4 * i, 4 * i + 4);
    const luma = (r * 299 + g * 587 + b * 114) / 1000;
    pixels[i] = (luma * a) / 255 / 255; // stored as float32, exactly as numpy divides
  }
  return pixels;
}

export function writePng(path, pixels, n) {
  const png = new PNG({ width: n, height: n });
  for (let i = 0; i < n * n; i++) {
    const v = Math.round(Math.min(1, Math.max(0, pixels[i])) * 255);
    png.data.set([v, v, v, 255], 4 * i);
  }
  writeFileSync(path, PNG.sync.write(png));
}

// Write the outputs asked for; the JSON keeps every float32 exactly.
export function save(args, pixels, n, extra) {
  if (args.out) writePng(args.out, pixels, n);
  if (args.json) writeFileSync(args.json, JSON.stringify({ ...extra, completed: Array.from(pixels) }));
}

// Run `main`, turning a UsageError into one line on stderr and exit code 2.
export async function cli(main) {
  try {
    await main();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`error: ${err.message}`);
    process.exitCode = 2;
  }
}
