// Pictures on the page: pixels in [0, 1] painted on a canvas, and any drawable turned into the
// model's n x n grey pixels (white object on black). Used by web/app.js.

const BOUNDARY = "#e62828"; // the line where generation starts

// Paint pixels in [0, 1] (row-major, n x n, the first `rows` rows) on a canvas, enlarged with
// crisp pixels, with a red line where generation starts.
export function paint(canvas, pixels, n, knownRows, rows = n) {
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
export function toPixels(source, width, height, n, invert) {
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
