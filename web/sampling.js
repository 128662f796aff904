// Seeded noise for sampled completions: rowgen-normal/1, the generator of rowgen/sampling.py.
//
// Value i of a seed's stream is a function of (seed, i) alone (docs/contract.md, "Noise from a
// seed"): lowbias32 on 32-bit words, Box-Muller in float64, rounded to float32, so this file and
// numpy give the same float32 numbers. Imported by the page (web/rowgen.js) and by the Node.js
// examples (examples/node/sample.mjs); tests/web/ holds both to Python's draw_noise, bit for bit.

export const NOISE_ALGORITHM = "rowgen-normal/1";
export const MAX_SEED = 2n ** 63n - 1n; // rowgen.sampling.MAX_SEED: what the app takes too
export const MAX_TEMPERATURE = 2; // rowgen.sampling.MAX_TEMPERATURE
const SEED_LIMIT = 2n ** 64n; // the generator itself takes any unsigned 64-bit seed
const MAX_VALUES = 2 ** 31; // values per seed: counters 2i and 2i + 1 stay 32-bit words
const COUNTER_KEY = 0x9e3779b9;
const TWO_PI = 2 * Math.PI; // the float64 product, as Python's 2 * math.pi

// lowbias32: a bijection of 32-bit words. Math.imul multiplies modulo 2**32; `>>> 0` reads the
// result as unsigned.
function mix(x) {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

// A float64 uniform in (0, 1) from one 32-bit counter (exact: w + 0.5 needs 33 bits).
function uniform(counter, lo, hi) {
  const bits = mix(mix(mix(counter ^ COUNTER_KEY) ^ lo) ^ hi);
  return (bits + 0.5) / 2 ** 32;
}

// The seed's two 32-bit words; a seed is a BigInt, an integer Number or a decimal string.
function seedWords(seed) {
  let s;
  try {
    s = BigInt(seed);
  } catch {
    s = -1n;
  }
  if (s < 0n || s >= SEED_LIMIT) {
    throw new RangeError(`seed must be a whole number from 0 to 2**64 - 1, got ${seed}`);
  }
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

// Values start..start + count - 1 of the seed's stream, as a Float32Array.
export function standardNormal(seed, start, count) {
  const [lo, hi] = seedWords(seed);
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 ||
      start + count > MAX_VALUES) {
    throw new RangeError(`values ${start}..${start + count - 1}: a stream holds 0..${MAX_VALUES - 1}`);
  }
  const values = new Float32Array(count); // assignment rounds to the nearest float32
  for (let k = 0; k < count; k++) {
    const i = start + k;
    const u1 = uniform(2 * i, lo, hi);
    const u2 = uniform(2 * i + 1, lo, hi);
    values[k] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(TWO_PI * u2);
  }
  return values;
}

// rowgen.sampling.draw_noise: `samples` x `steps` x `noiseDim` values, flat and row-major.
export function drawNoise(seed, samples, steps, noiseDim) {
  return standardNormal(seed, 0, samples * steps * noiseDim);
}

// The noise of sample `sample` alone (steps x noiseDim): the same whether 1 or 8 are drawn.
export function sampleNoise(seed, sample, steps, noiseDim) {
  return standardNormal(seed, sample * steps * noiseDim, steps * noiseDim);
}

// A seed as typed by a person: a decimal whole number 0..MAX_SEED, as a BigInt; Error otherwise.
export function parseSeed(text) {
  const trimmed = String(text).trim();
  if (/^\d+$/.test(trimmed) && BigInt(trimmed) <= MAX_SEED) return BigInt(trimmed);
  throw new Error(`seed must be a whole number from 0 to ${MAX_SEED}, got ${JSON.stringify(String(text))}`);
}

// A temperature as typed: a number 0..MAX_TEMPERATURE; Error otherwise.
export function parseTemperature(text) {
  const trimmed = String(text).trim();
  const value = Number(trimmed);
  if (trimmed !== "" && Number.isFinite(value) && value >= 0 && value <= MAX_TEMPERATURE) return value;
  throw new Error(
    `temperature must be a number from 0 to ${MAX_TEMPERATURE} (0: the deterministic row, 1: the ` +
      `model's own spread), got ${JSON.stringify(String(text))}`,
  );
}
