// The Slides page's two browser-side pieces, chosen by the page's `mode` argument:
// - "upload": sends the chosen file to the app's own /slide-upload with an XHR, whose upload
//   events drive a real progress bar, then hands the gateway's answer to the page;
// - "viewer": OpenSeadragon over the app's own /slide-tiles relay, with a scale bar.
// Every address is relative to the app's origin, so the page works behind a tunnel.
"use strict";

const $ = (id) => document.getElementById(id);

// -- upload ------------------------------------------------------------------------------------

const upload = { ticket: null, busy: false, maxBytes: 0 };

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function renderUpload(args) {
  $("upload").hidden = false;
  upload.maxBytes = args.max_bytes || 0;
  $("file").accept = args.accept || "";
  if (!upload.busy && args.ticket !== upload.ticket) {
    upload.ticket = args.ticket;
    $("send").disabled = !$("file").files.length;
  }
  Streamlit.setFrameHeight(150); // room for the bar and its line of text
}

function finish(result) {
  upload.busy = false;
  upload.ticket = null; // spent: the page's next render brings a new one
  $("file").disabled = false;
  // A fresh nonce, so the page handles each answer once however often it reruns.
  Streamlit.setComponentValue({ nonce: `${Date.now()}-${Math.random()}`, ...result });
}

function send() {
  const file = $("file").files[0];
  if (!file || !upload.ticket || upload.busy) return;
  if (upload.maxBytes && file.size > upload.maxBytes) {
    $("upload-status").textContent =
      `${file.name} is ${megabytes(file.size)}; the limit is ${megabytes(upload.maxBytes)}.`;
    return;
  }
  upload.busy = true;
  $("send").disabled = true;
  $("file").disabled = true;
  const progress = $("progress");
  progress.hidden = false;
  progress.value = 0;
  const query = new URLSearchParams({ ticket: upload.ticket, filename: file.name });
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `${appBase()}/slide-upload?${query}`);
  const zip = file.name.toLowerCase().endsWith(".zip");
  xhr.setRequestHeader("Content-Type", zip ? "application/zip" : "application/octet-stream");
  xhr.upload.onprogress = (event) => {
    if (!event.lengthComputable) return;
    progress.value = event.loaded / event.total;
    const percent = Math.floor((100 * event.loaded) / event.total);
    $("upload-status").textContent =
      `Uploading ${file.name}: ${megabytes(event.loaded)} of ${megabytes(event.total)} (${percent} %)`;
  };
  xhr.upload.onload = () => {
    progress.value = 1;
    $("upload-status").textContent = `Sent ${file.name}; the system is checking the slide…`;
  };
  xhr.onload = () => {
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch (_) {
      body = null;
    }
    const ok = xhr.status === 201;
    $("upload-status").textContent = ok ? `Stored ${file.name}.` : `${file.name} was not stored.`;
    finish({ status: xhr.status, body, filename: file.name });
  };
  xhr.onerror = () => {
    $("upload-status").textContent = `${file.name} was not stored: the connection failed.`;
    finish({ status: 0, body: null, filename: file.name });
  };
  xhr.send(file);
}

$("file").addEventListener("change", () => {
  $("send").disabled = upload.busy || !upload.ticket || !$("file").files.length;
  $("progress").hidden = true;
  $("upload-status").textContent = "";
});
$("send").addEventListener("click", send);

// -- viewer ------------------------------------------------------------------------------------

const view = {
  viewer: null,
  slideId: null,
  grant: null,
  mpp: null,
  maxLevel: 0,
  maxLoaded: -1,
  renewTimer: null,
};

function tileBase(slideId) {
  return `${appBase()}/slide-tiles/${encodeURIComponent(slideId)}`;
}

// The longest 1, 2 or 5 x 10^n micrometres that fits in `maxPixels` on screen.
function niceLength(micronsPerScreenPixel, maxPixels) {
  const limit = micronsPerScreenPixel * maxPixels;
  let best = null;
  for (let exponent = -2; exponent <= 6; exponent++) {
    for (const step of [1, 2, 5]) {
      const length = step * 10 ** exponent;
      if (length <= limit) best = length;
    }
  }
  return best;
}

function updateScale() {
  const bar = $("scalebar");
  if (!view.viewer || !view.mpp) {
    bar.hidden = true;
    return;
  }
  const viewport = view.viewer.viewport;
  const screenPerImagePixel = viewport.viewportToImageZoom(viewport.getZoom(true));
  const micronsPerScreenPixel = view.mpp / screenPerImagePixel;
  const length = niceLength(micronsPerScreenPixel, 150);
  if (!length) {
    bar.hidden = true;
    return;
  }
  bar.hidden = false;
  $("scalebar-bar").style.width = `${length / micronsPerScreenPixel}px`;
  const rounded = (value) => Number(value.toPrecision(3));
  $("scalebar-label").textContent =
    length >= 1000 ? `${rounded(length / 1000)} mm` : `${rounded(length)} µm`;
  const percent = (100 * screenPerImagePixel).toFixed(1);
  $("viewer-status").textContent = `Zoom: ${percent} % of full resolution`;
  document.body.dataset.zoom = String(screenPerImagePixel);
}

function describeZoom() {
  if (view.mpp) return updateScale();
  const viewport = view.viewer.viewport;
  const screenPerImagePixel = viewport.viewportToImageZoom(viewport.getZoom(true));
  $("viewer-status").textContent =
    `Zoom: ${(100 * screenPerImagePixel).toFixed(1)} % of full resolution (no scale bar: resolution unknown)`;
  document.body.dataset.zoom = String(screenPerImagePixel);
}

async function openSlide(args) {
  const response = await fetch(`${tileBase(args.slide_id)}/dzi?grant=${encodeURIComponent(view.grant)}`);
  if (!response.ok) {
    let message = `The slide could not be opened (${response.status}).`;
    try {
      message = (await response.json()).error.message || message;
    } catch (_) {
      // not the envelope: keep the status
    }
    $("viewer-status").textContent = message;
    return;
  }
  const xml = new DOMParser().parseFromString(await response.text(), "application/xml");
  const image = xml.documentElement;
  const size = image.getElementsByTagName("Size")[0];
  const width = Number(size.getAttribute("Width"));
  const height = Number(size.getAttribute("Height"));
  const format = image.getAttribute("Format") || "jpeg";
  const slideId = args.slide_id;
  view.maxLevel = Math.ceil(Math.log2(Math.max(width, height)));
  view.maxLoaded = -1;
  document.body.dataset.maxLevel = String(view.maxLevel);
  document.body.dataset.maxLevelLoaded = "-1";
  document.body.dataset.tilesLoaded = "0";
  if (view.viewer) view.viewer.destroy();
  view.viewer = OpenSeadragon({
    element: $("viewer"),
    prefixUrl: "vendor/openseadragon/images/",
    showNavigator: true,
    navigatorPosition: "TOP_RIGHT",
    maxZoomPixelRatio: 2,
    visibilityRatio: 0.5,
    tileSources: {
      width,
      height,
      tileSize: Number(image.getAttribute("TileSize")),
      tileOverlap: Number(image.getAttribute("Overlap")),
      minLevel: 0,
      maxLevel: view.maxLevel,
      // Read at request time: a later render may bring a fresh grant for the same slide.
      getTileUrl: (level, x, y) =>
        `${tileBase(slideId)}/tiles/${level}/${x}_${y}.${format}?grant=${encodeURIComponent(view.grant)}`,
    },
  });
  window.slideViewer = view.viewer; // for the browser tests, which zoom and pan it
  view.viewer.addHandler("tile-loaded", (event) => {
    view.maxLoaded = Math.max(view.maxLoaded, event.tile.level);
    document.body.dataset.maxLevelLoaded = String(view.maxLoaded);
    document.body.dataset.tilesLoaded = String(Number(document.body.dataset.tilesLoaded) + 1);
  });
  view.viewer.addHandler("tile-load-failed", () => {
    $("viewer-status").textContent =
      "Some tiles could not be loaded; if this lasts, reopen the slide from the list.";
  });
  for (const name of ["open", "animation", "update-viewport"]) {
    view.viewer.addHandler(name, describeZoom);
  }
}

function renderViewer(args) {
  $("viewer-box").hidden = false;
  $("viewer").style.height = `${args.height || 600}px`;
  view.grant = args.grant;
  // Ask the page for the next grant before this one runs out: a new value reruns the page,
  // which hands over a fresh grant once the current one is half spent.
  clearTimeout(view.renewTimer);
  if (args.renew_in_s) {
    view.renewTimer = setTimeout(
      () => Streamlit.setComponentValue({ renew: Date.now() }),
      (args.renew_in_s + 1) * 1000,
    );
  }
  view.mpp = args.mpp || null;
  if (args.slide_id !== view.slideId) {
    view.slideId = args.slide_id;
    openSlide(args);
  } else if (view.viewer) {
    describeZoom();
  }
  Streamlit.setFrameHeight((args.height || 600) + 40);
}

Streamlit.ready((args) => (args.mode === "upload" ? renderUpload(args) : renderViewer(args)));
