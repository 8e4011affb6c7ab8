// The Slides page's two browser-side pieces, chosen by the page's `mode` argument:
// - "upload": sends the chosen file to the app's own /slide-upload with an XHR, whose upload
//   events drive a real progress bar, then hands the gateway's answer to the page;
// - "viewer": OpenSeadragon over the app's own /slide-tiles relay, with a scale bar, and, for
//   a finished analysis, its heatmap (a second tiled image through /analysis-tiles, aligned
//   with the slide) and tissue mask over it; the page can ask it to zoom to a region.
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
  openNonce: null,
  grantSince: 0, // when the current grant arrived (ms)
  retryTimer: null,
  // Tiles that failed since the last grant arrived: a 401 from an expired grant, say.
  failed: new Set(),
  args: {}, // the page's last arguments, for what waits until the slide is open
  analysisId: null, // whose heatmap is (being) shown over the slide
  heatmap: null, // its TiledImage, once added
  mask: null, // the tissue mask's TiledImage, while shown
  maskPending: false,
  focusNonce: null, // the page's last "zoom to this region", done once
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

// The slide's descriptor, or an Error whose message is the sentence to show.
async function fetchDescriptor(slideId) {
  let response;
  try {
    response = await fetch(`${tileBase(slideId)}/dzi?grant=${encodeURIComponent(view.grant)}`);
  } catch (_) {
    throw new Error("The slide could not be opened: the connection failed. Press View to retry.");
  }
  if (!response.ok) {
    let message = `The slide could not be opened (${response.status}).`;
    try {
      message = (await response.json()).error.message || message;
    } catch (_) {
      // not the envelope: keep the status
    }
    throw new Error(`${message} Press View to retry.`);
  }
  return response.text();
}

async function openSlide(args) {
  let text;
  try {
    text = await fetchDescriptor(args.slide_id);
  } catch (failure) {
    // Forgotten, so the next render (View pressed again) opens it afresh.
    if (view.slideId === args.slide_id) view.slideId = null;
    $("viewer-status").textContent = failure.message;
    return;
  }
  if (view.slideId !== args.slide_id) return; // another slide was asked for meanwhile
  const xml = new DOMParser().parseFromString(text, "application/xml");
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
  view.failed.clear();
  forgetAnalysis();
  view.viewer = OpenSeadragon({
    element: $("viewer"),
    prefixUrl: "vendor/openseadragon/images/",
    showNavigator: true,
    navigatorPosition: "TOP_RIGHT",
    maxZoomPixelRatio: 2,
    visibilityRatio: 0.5,
    // A tile refused for a moment (a busy gateway) is asked again before it is given up.
    tileRetryMax: 2,
    tileRetryDelay: 1500,
    tileSources: {
      width,
      height,
      tileSize: Number(image.getAttribute("TileSize")),
      tileOverlap: Number(image.getAttribute("Overlap")),
      minLevel: 0,
      maxLevel: view.maxLevel,
      // OpenSeadragon keeps what this returns for the tile's whole life: a function, so the
      // grant is read at request time and a tile made before a renewal never sends a stale one.
      getTileUrl: (level, x, y) => () =>
        `${tileBase(slideId)}/tiles/${level}/${x}_${y}.${format}?grant=${encodeURIComponent(view.grant)}`,
      // Without the grant, so a renewal does not make every cached tile look new.
      getTileHashKey: (level, x, y) => `${slideId}/${level}/${x}_${y}`,
    },
  });
  window.slideViewer = view.viewer; // for the browser tests, which zoom and pan it
  // The overlays go over the slide once it is open (it is item 0 of the world).
  view.viewer.addOnceHandler("open", () => syncAnalysis(view.args));
  view.viewer.addHandler("tile-loaded", (event) => {
    if (event.tiledImage !== view.viewer.world.getItemAt(0)) {
      if (event.tiledImage === view.heatmap) {
        const loaded = Number(document.body.dataset.heatmapTilesLoaded || 0) + 1;
        document.body.dataset.heatmapTilesLoaded = String(loaded);
      }
      return;
    }
    view.maxLoaded = Math.max(view.maxLoaded, event.tile.level);
    document.body.dataset.maxLevelLoaded = String(view.maxLoaded);
    document.body.dataset.tilesLoaded = String(Number(document.body.dataset.tilesLoaded) + 1);
  });
  view.viewer.addHandler("tile-load-failed", (event) => {
    view.failed.add(event.tile);
    // A load begun before the current grant arrived kept the old one through its retries
    // (OpenSeadragon fixes a job's address when it starts): ask again now.
    if (event.time < view.grantSince) {
      clearTimeout(view.retryTimer);
      view.retryTimer = setTimeout(retryFailedTiles, 0);
      return;
    }
    $("viewer-status").textContent =
      "Some tiles could not be loaded; they are asked for again with the next viewer grant.";
  });
  for (const name of ["open", "animation", "update-viewport"]) {
    view.viewer.addHandler(name, describeZoom);
  }
}

// A failed tile stays blank (OpenSeadragon marks it missing): with a new grant, those tiles
// are marked present again and the image is reset, so they are requested once more.
function retryFailedTiles() {
  if (!view.viewer || !view.viewer.world.getItemCount() || !view.failed.size) return;
  for (const tile of view.failed) tile.exists = true;
  view.failed.clear();
  for (let i = 0; i < view.viewer.world.getItemCount(); i++) view.viewer.world.getItemAt(i).reset();
  view.viewer.forceRedraw();
}

// -- analysis overlays -------------------------------------------------------------------------

function analysisBase(analysisId) {
  return `${appBase()}/analysis-tiles/${encodeURIComponent(analysisId)}`;
}

function overlayStatus(text) {
  $("overlay-status").textContent = text;
}

// The overlays belong to the viewer they were added to: a new viewer starts without them.
function forgetAnalysis() {
  view.analysisId = null;
  view.heatmap = null;
  view.mask = null;
  view.maskPending = false;
  document.body.dataset.heatmap = "none";
  document.body.dataset.heatmapTilesLoaded = "0";
  document.body.dataset.mask = "hidden";
}

function removeItem(item) {
  if (item && view.viewer && view.viewer.world.getIndexOfItem(item) >= 0) {
    view.viewer.world.removeItem(item);
  }
}

async function addHeatmap(analysisId) {
  let text;
  try {
    const response = await fetch(
      `${analysisBase(analysisId)}/heatmap.dzi?grant=${encodeURIComponent(view.grant)}`,
    );
    if (!response.ok) throw new Error(String(response.status));
    text = await response.text();
  } catch (failure) {
    if (view.analysisId === analysisId) {
      overlayStatus(`The heatmap could not be loaded (${failure.message}).`);
      document.body.dataset.heatmap = "failed";
    }
    return;
  }
  if (view.analysisId !== analysisId || !view.viewer) return; // another was asked for meanwhile
  const image = new DOMParser().parseFromString(text, "application/xml").documentElement;
  const size = image.getElementsByTagName("Size")[0];
  const width = Number(size.getAttribute("Width"));
  const height = Number(size.getAttribute("Height"));
  const format = image.getAttribute("Format") || "png";
  const viewer = view.viewer;
  viewer.addTiledImage({
    // The heatmap is smaller than the slide but covers the same ground: width 1 in viewport
    // coordinates is the slide's whole width, so the two line up.
    x: 0,
    y: 0,
    width: 1,
    index: 1,
    opacity: heatmapOpacity(),
    tileSource: {
      width,
      height,
      tileSize: Number(image.getAttribute("TileSize")),
      tileOverlap: Number(image.getAttribute("Overlap")),
      minLevel: 0,
      maxLevel: Math.ceil(Math.log2(Math.max(width, height))),
      getTileUrl: (level, x, y) => () =>
        `${analysisBase(analysisId)}/heatmap_files/${level}/${x}_${y}.${format}?grant=${encodeURIComponent(view.grant)}`,
      getTileHashKey: (level, x, y) => `heatmap/${analysisId}/${level}/${x}_${y}`,
    },
    success: (event) => {
      if (view.viewer !== viewer || view.analysisId !== analysisId) {
        viewer.world.removeItem(event.item);
        return;
      }
      view.heatmap = event.item;
      event.item.setOpacity(heatmapOpacity());
      document.body.dataset.heatmap = "shown";
      document.body.dataset.heatmapOpacity = String(heatmapOpacity());
      overlayStatus("Heatmap shown over the slide.");
    },
    error: () => {
      if (view.analysisId !== analysisId) return;
      document.body.dataset.heatmap = "failed";
      overlayStatus("The heatmap could not be shown.");
    },
  });
}

function heatmapOpacity() {
  const opacity = Number(view.args.heatmap_opacity);
  return Number.isFinite(opacity) ? Math.min(Math.max(opacity, 0), 1) : 0.5;
}

function showMask(analysisId) {
  view.maskPending = true;
  const viewer = view.viewer;
  viewer.addTiledImage({
    x: 0,
    y: 0,
    width: 1,
    opacity: 0.5,
    tileSource: {
      type: "image",
      url: `${analysisBase(analysisId)}/mask.png?grant=${encodeURIComponent(view.grant)}`,
    },
    success: (event) => {
      view.maskPending = false;
      if (view.viewer !== viewer || view.analysisId !== analysisId || !view.args.show_mask) {
        viewer.world.removeItem(event.item);
        return;
      }
      view.mask = event.item;
      document.body.dataset.mask = "shown";
    },
    error: () => {
      view.maskPending = false;
      overlayStatus("The tissue mask could not be shown.");
    },
  });
}

// Bring the overlays and the view in line with the page's arguments.
function syncAnalysis(args) {
  view.args = args;
  const viewer = view.viewer;
  if (!viewer || !viewer.world.getItemCount()) return; // not open yet: "open" calls again
  const analysisId = args.analysis_id || null;
  if (analysisId !== view.analysisId) {
    removeItem(view.heatmap);
    removeItem(view.mask);
    forgetAnalysis();
    overlayStatus("");
    view.analysisId = analysisId;
    if (analysisId) {
      document.body.dataset.heatmap = "loading";
      addHeatmap(analysisId);
    }
  }
  if (view.heatmap) {
    view.heatmap.setOpacity(heatmapOpacity());
    document.body.dataset.heatmapOpacity = String(heatmapOpacity());
  }
  if (analysisId && args.show_mask && !view.mask && !view.maskPending) {
    showMask(analysisId);
  } else if (!args.show_mask && view.mask) {
    removeItem(view.mask);
    view.mask = null;
    document.body.dataset.mask = "hidden";
  }
  const focus = args.focus;
  if (focus && focus.nonce !== view.focusNonce) {
    view.focusNonce = focus.nonce;
    // In viewport coordinates: level-0 pixels over the slide's width, as the page made them.
    viewer.viewport.fitBounds(new OpenSeadragon.Rect(focus.x, focus.y, focus.width, focus.height));
    document.body.dataset.focus = String(focus.nonce);
  }
}

function renderViewer(args) {
  $("viewer-box").hidden = false;
  $("viewer").style.height = `${args.height || 600}px`;
  const renewed = args.grant !== view.grant;
  view.grant = args.grant;
  if (renewed) view.grantSince = Date.now();
  if (renewed && args.slide_id === view.slideId) retryFailedTiles();
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
  // View pressed again changes the nonce, so the same slide opens afresh (after a failure, say).
  const reopen = args.open_nonce !== view.openNonce;
  view.openNonce = args.open_nonce;
  if (args.slide_id !== view.slideId || reopen) {
    view.slideId = args.slide_id;
    openSlide(args);
  } else if (view.viewer) {
    describeZoom();
  }
  syncAnalysis(args);
  Streamlit.setFrameHeight((args.height || 600) + 40);
}

Streamlit.ready((args) => (args.mode === "upload" ? renderUpload(args) : renderViewer(args)));
