// The Streamlit custom-component protocol (version 1) in a few lines: the page's arguments
// arrive as "streamlit:render" messages, a value goes back with setComponentValue. Shared by
// the slide viewer and the slide upload components.
"use strict";

const Streamlit = (() => {
  const send = (type, data) =>
    window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
  let onRender = () => {};
  window.addEventListener("message", (event) => {
    if (event.source !== window.parent) return; // only the app that embeds this frame
    if (event.data && event.data.type === "streamlit:render") onRender(event.data.args || {});
  });
  return {
    ready(handler) {
      onRender = handler;
      send("streamlit:componentReady", { apiVersion: 1 });
    },
    setFrameHeight(height) {
      send("streamlit:setFrameHeight", { height });
    },
    setComponentValue(value) {
      send("streamlit:setComponentValue", { value, dataType: "json" });
    },
  };
})();

// Where this app is served from: the frames live under "<app>/component/...", so the app's
// own routes are found relative to that, on the same origin (a tunnel's, or localhost).
function appBase() {
  const path = window.location.pathname;
  const at = path.indexOf("/component/");
  return at >= 0 ? path.slice(0, at) : "";
}
