// The image viewer: 16-bit pixels with window/level by mouse drag, and a CAM overlay canvas.

const FULL = { width: 1, level: 0.5 };

// Turbo colour map (matplotlib's), 9 anchors, linearly interpolated: v in [0, 1] -> [r, g, b].
const TURBO_ANCHORS = [[48, 18, 59], [70, 107, 227], [40, 188, 235], [50, 242, 152], [164, 252, 60],
  [238, 207, 58], [251, 126, 33], [208, 47, 5], [122, 4, 3]];
function turbo(v) {
  const x = Math.max(0, Math.min(1, v)) * 8;
  const i = Math.min(7, Math.floor(x));
  const t = x - i;
  return TURBO_ANCHORS[i].map((a, k) => Math.round(a + (TURBO_ANCHORS[i + 1][k] - a) * t));
}
const TURBO = Array.from({ length: 256 }, (_, i) => turbo(i / 255));

export class Viewer {
  constructor({ stage, image, cam, readout, onChange }) {
    this.stage = stage;
    this.image = image;
    this.cam = cam;
    this.readout = readout;
    this.onChange = onChange || (() => {});
    this.pixels = null;
    this.width = 0;
    this.height = 0;
    this.wl = { ...FULL };
    this.camVisible = true;
    this.opacity = 0.45;
    this._bindMouse();
    new ResizeObserver(() => this._fit()).observe(stage);
  }

  /** Show new pixels (Uint16Array, row-major) and reset window/level. */
  setPixels(pixels, width, height) {
    this.pixels = pixels;
    this.width = width;
    this.height = height;
    for (const c of [this.image, this.cam]) {
      c.width = width;
      c.height = height;
    }
    this.clearCam();
    this.resetWindow();
    this._fit();
  }

  resetWindow() {
    this.wl = { ...FULL };
    this.render();
  }

  render() {
    if (!this.pixels) return;
    const { width, level } = this.wl;
    const lo = (level - width / 2) * 65535;
    const span = Math.max(1, width * 65535);
    const lut = new Uint8ClampedArray(65536);
    for (let v = 0; v < 65536; v++) lut[v] = ((v - lo) / span) * 255;
    const ctx = this.image.getContext("2d");
    const out = ctx.createImageData(this.width, this.height);
    const d = out.data;
    const px = this.pixels;
    for (let i = 0, j = 0; i < px.length; i++, j += 4) {
      const g = lut[px[i]];
      d[j] = g;
      d[j + 1] = g;
      d[j + 2] = g;
      d[j + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    this.readout.textContent = `W ${Math.round(width * 100)} · L ${Math.round(level * 100)}`;
    this.readout.title = "window width and level, in % of the image's value range";
    this.onChange(this.wl);
  }

  /** Draw a CAM (ImageBitmap/HTMLImageElement, grayscale) over the image's centre square, coloured. */
  setCam(camImage) {
    const side = Math.min(this.width, this.height);
    const top = Math.floor(this.height / 2) - Math.floor(side / 2);
    const left = Math.floor(this.width / 2) - Math.floor(side / 2);
    const scratch = document.createElement("canvas");
    scratch.width = side;
    scratch.height = side;
    const sctx = scratch.getContext("2d");
    sctx.imageSmoothingEnabled = true;
    sctx.drawImage(camImage, 0, 0, side, side);
    const img = sctx.getImageData(0, 0, side, side);
    const d = img.data;
    for (let j = 0; j < d.length; j += 4) {
      const v = d[j];
      const [r, g, b] = TURBO[v];
      d[j] = r;
      d[j + 1] = g;
      d[j + 2] = b;
      // Low evidence stays transparent so the anatomy is not tinted; strong evidence is opaque.
      const a = Math.max(0, Math.min(1, (v / 255 - 0.2) / 0.45));
      d[j + 3] = Math.round(255 * a * a * (3 - 2 * a));
    }
    const ctx = this.cam.getContext("2d");
    ctx.clearRect(0, 0, this.cam.width, this.cam.height);
    ctx.putImageData(img, left, top);
    this._applyCamStyle();
  }

  clearCam() {
    this.cam.getContext("2d").clearRect(0, 0, this.cam.width, this.cam.height);
  }

  setOpacity(value) {
    this.opacity = Math.max(0, Math.min(1, value));
    this._applyCamStyle();
  }

  setCamVisible(visible) {
    this.camVisible = visible;
    this._applyCamStyle();
  }

  _applyCamStyle() {
    this.cam.style.opacity = String(this.opacity);
    this.cam.style.visibility = this.camVisible ? "visible" : "hidden";
  }

  _fit() {
    if (!this.width) return;
    const box = this.stage.getBoundingClientRect();
    const scale = Math.min(box.width / this.width, box.height / this.height);
    for (const c of [this.image, this.cam]) {
      c.style.width = `${Math.floor(this.width * scale)}px`;
      c.style.height = `${Math.floor(this.height * scale)}px`;
    }
  }

  _bindMouse() {
    let drag = null;
    this.stage.addEventListener("pointerdown", (e) => {
      if (!this.pixels || e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, wl: { ...this.wl } };
      this.stage.setPointerCapture(e.pointerId);
    });
    this.stage.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const k = 1 / 400; // a 400-pixel drag spans the full range
      const width = Math.min(2, Math.max(0.01, drag.wl.width + (e.clientX - drag.x) * k));
      const level = Math.min(1, Math.max(0, drag.wl.level - (e.clientY - drag.y) * k));
      this.wl = { width, level };
      if (!this._pending) {
        this._pending = true;
        requestAnimationFrame(() => {
          this._pending = false;
          this.render();
        });
      }
    });
    const end = () => (drag = null);
    this.stage.addEventListener("pointerup", end);
    this.stage.addEventListener("pointercancel", end);
    this.stage.addEventListener("dblclick", () => this.resetWindow());
  }
}
