// The page's mean / sample control: which bundles can sample, the seed and the temperature.
//
// A bundle samples when /bundles.json lists it under "sampling" (serve.web: its manifest lists
// sample_step.onnx). For any other bundle the sample mode is disabled and the note says why.

import { MAX_TEMPERATURE, NOISE_ALGORITHM, parseSeed, parseTemperature } from "/sampling.js";

const $ = (id) => document.getElementById(id);
let sampling = new Set(); // names of the bundles that can sample

export const MEAN = "mean";
export const SAMPLE = "sample";

export function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

// Wire the control once the bundle index is known; `onChange()` runs after every change.
export function setupModes(index, onChange = () => {}) {
  sampling = new Set(index.sampling ?? []);
  $("temperature").max = MAX_TEMPERATURE;
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => { showModes($("bundle").value); onChange(); });
  }
  showModes($("bundle").value);
}

// Enable the sample mode for a bundle that can sample; otherwise disable it, say why, and go
// back to the mean.
export function showModes(bundle) {
  const can = sampling.has(bundle);
  $("mode-sample").disabled = !can;
  if (!can && mode() === SAMPLE) $("mode-mean").checked = true;
  const sampled = mode() === SAMPLE;
  $("seed").disabled = $("temperature").disabled = !sampled;
  $("mode-note").classList.toggle("off", !can);
  $("mode-note").textContent = !can
    ? `sample mode is off: ${bundle} gives only the mean (its bundle has no sample_step.onnx; ` +
      "a model trained with a sampling head has one)"
    : sampled
      ? "sample: one completion drawn row by row by sample_step.onnx from the seed's noise " +
        `(${NOISE_ALGORITHM}), the app's first sample of that seed; the mean is shown beside it`
      : "mean: the model's one best guess, row by row by step.onnx";
}

// The sample's options, checked: { seed: BigInt, temperature: number }; an Error names the field.
export function readSampling() {
  return { seed: parseSeed($("seed").value), temperature: parseTemperature($("temperature").value) };
}
